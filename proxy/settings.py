"""The appliance settings (``schoolgate.yaml``): set once per install.

Where to listen, where data lives, which database, where lists come from.
Relative paths are resolved against the folder that holds the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    field_validator,
    model_validator,
)

from proxy.store.site import DEFAULT_SITE, SITE_PATTERN
from proxy.yamlfile import ConfigError, load_yaml, validate

SETTINGS_FILE = "schoolgate.yaml"
POLICY_FILE = "policy.yaml"

Mode = Literal["regular", "transparent", "wireguard"]
ListFormat = Literal["ut1", "iwf", "hosts", "plain"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Strict):
    """Where a named list source comes from: a local path, or a URL to fetch."""

    path: Path | None = None
    url: str | None = None
    format: ListFormat
    credentials_env: str | None = None
    credentials_file: Path | None = None
    # a list with more bad lines than this is rejected whole, not half-loaded
    max_bad_lines: int = Field(1000, ge=0)
    # `lists update` refuses a new copy with fewer entries than (1 - max_shrink) x the old
    max_shrink: float = Field(0.25, ge=0, le=1)
    # illegal in every policy, whatever it says (the IWF and CTIRU lists): proxy/illegal.py;
    # `lists update` never lets it shrink, even with --force
    illegal: bool = False

    @model_validator(mode="after")
    def _path_or_url(self) -> Source:
        if self.path is None and self.url is None:
            raise ValueError("a source needs a path or a url")
        return self


class Retention(Strict):
    access: int = Field(90, ge=1)
    incidents: int = Field(2190, ge=1)


class AlertChannel(Strict):
    webhook: str | None = None
    email: list[str] = []


class Digest(Strict):
    """Where the digest of other incidents goes, and how often (at ``hour`` o'clock UTC)."""

    webhook: str | None = None
    email: list[str] = []
    every: Literal["daily", "weekly"] = "daily"
    hour: int = Field(16, ge=0, le=23)


class Smtp(Strict):
    """The mail server alerts are sent through; the password is read from ``password_env``."""

    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    sender: str = "schoolgate@localhost"
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None


class Alerts(Strict):
    illegal: AlertChannel = AlertChannel()  # told at once
    digest: Digest = Digest()  # every other incident, daily or weekly
    smtp: Smtp = Smtp()


class LdapLogin(Strict):
    """Check proxy logins with an LDAP / Active Directory simple bind (ldap3)."""

    server: str  # ldaps://dc1.school.local (ldap:// only on a trusted network)
    # the bind DN for a login; {user} is replaced, escaped: "{user}@school.local" (AD UPN)
    # or "uid={user},ou=people,dc=school,dc=local"
    user_dn: str = "{user}"
    timeout_seconds: float = Field(5.0, gt=0)

    @field_validator("user_dn")
    @classmethod
    def _template(cls, value: str) -> str:
        if "{user}" not in value:
            raise ValueError("user_dn must contain {user}")
        return value


class HeaderLogin(Strict):
    """A user named in a header by a trusted upstream (an SSO gateway, a parent proxy)."""

    header: str = "X-Authenticated-User"
    trusted: list[IPvAnyNetwork]  # only requests from these addresses may name a user


class Auth(Strict):
    """Proxy logins: who a request is from, beyond its address."""

    users_file: Path | None = None  # NAME:BCRYPT-HASH lines (`schoolgate users add`, htpasswd -B)
    ldap: LdapLogin | None = None
    required: bool = False  # true: explicit-proxy clients must log in (407 until they do)
    # transparent clients sign in at http://LOGIN_HOST/ and their address is bound to them
    login_host: str = "login.schoolgate"
    bind_minutes: int = Field(480, ge=1)
    header: HeaderLogin | None = None
    # Password guessing, per user and per client address: after free_failures wrong tries in
    # a row each try waits twice as long; at lockout_after it is locked for lockout_minutes.
    free_failures: int = Field(5, ge=1, le=100)
    lockout_after: int = Field(10, ge=2, le=1000)
    lockout_minutes: int = Field(15, ge=1, le=1440)

    @model_validator(mode="after")
    def _something_to_check(self) -> Auth:
        if self.required and self.users_file is None and self.ldap is None:
            raise ValueError("auth.required needs users_file or ldap to check logins against")
        return self


class RadiusClient(Strict):
    """A NAS (wireless controller) allowed to send accounting, and its shared secret."""

    address: IPvAnyAddress
    secret: str | None = None  # or secret_env, so the secret stays out of the file
    secret_env: str | None = None  # the environment variable that holds the secret

    @model_validator(mode="after")
    def _one_secret(self) -> RadiusClient:
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give exactly one of secret and secret_env")
        return self


class Radius(Strict):
    """RADIUS accounting from the Wi-Fi: Framed-IP-Address -> User-Name (proxy/radius.py)."""

    listen: str = "0.0.0.0:1813"
    clients: list[RadiusClient]
    session_minutes: int = Field(480, ge=1)  # a session with no Interim or Stop ends then


class DirectoryGroup(Strict):
    """One directory group and the filter group its members get."""

    dn: str  # cn=teachers,ou=groups,dc=school,dc=local
    group: str  # a group of policy.yaml


class Directory(Strict):
    """Filter groups from directory (LDAP / AD) group membership (proxy/directory.py)."""

    server: str  # ldaps://dc1.school.local (ldap:// only on a trusted network)
    base_dn: str  # where people and groups are searched
    bind_dn: str | None = None  # null: an anonymous search
    bind_password_env: str | None = None  # the environment variable with the bind password
    user_filter: str = "(uid={user})"  # AD: (sAMAccountName={user}); {user} is escaped
    groups: list[DirectoryGroup]  # the first group the user is in decides
    cache_minutes: int = Field(10, ge=1)
    timeout_seconds: float = Field(5.0, gt=0)

    @field_validator("user_filter")
    @classmethod
    def _user_filter(cls, value: str) -> str:
        if "{user}" not in value:
            raise ValueError("user_filter must contain {user}")
        return value


class Limits(Strict):
    """What one connection may make the proxy hold in memory (addons/limits.py)."""

    # a request head (request line, headers, cookies) over this is answered 431
    max_header_kb: int = Field(64, ge=8, le=16384)
    # bodies larger than this stream through (download rules run on the stream), never held
    stream_body_kb: int = Field(1024, ge=64, le=65536)
    # a WebSocket message is held whole until its last fragment: a larger one ends the connection
    max_websocket_message_kb: int = Field(16384, ge=64, le=1048576)


class ConsoleTLS(Strict):
    """The web console's certificate and key (PEM); relative paths are from the settings file."""

    cert: Path
    key: Path


class Settings(Strict):
    """The settings file as written, before paths are resolved."""

    listen: str = "127.0.0.1:8080"
    modes: list[Mode] = ["regular"]
    data_dir: Path = Path("../var")
    database: str | None = None
    sources: dict[str, Source] = {}
    retention_days: Retention = Retention()
    alerts: Alerts = Alerts()
    policy: Path = Path(POLICY_FILE)
    metrics_listen: str | None = None  # HOST:PORT of the Prometheus endpoint; null: none
    workers: int = Field(1, ge=1, le=64)  # mitmproxy processes sharing the listen port
    upstream: str | None = None  # http://HOST:PORT of a parent proxy to chain to
    auth: Auth = Auth()
    radius: Radius | None = None
    directory: Directory | None = None
    limits: Limits = Limits()
    console_listen: str | None = "127.0.0.1:9181"  # HOST:PORT of the web console; null: none
    console_tls: ConsoleTLS | None = None  # HTTPS for the console; null: plain HTTP
    # the console's address as school devices reach it, for the block page's link
    console_url: str | None = None
    # two_person: a policy change made in the console waits for a second technician or approver
    policy_changes: Literal["one_person", "two_person"] = "one_person"
    # Which school of the trust this gateway serves: every store row it writes names it;
    # gateways of one site share it (README "Sites")
    site: str = DEFAULT_SITE
    # The trust's policy, with `policy:` as this site's overlay on it (proxy/trust.py)
    trust_policy: Path | None = None
    # The access log's file (rotated copies beside it, access.log.1…); null: access.log in
    # data_dir. The proxy writes it and the console's timeline, `purge` and the report read it.
    access_log: Path | None = None

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        if not SITE_PATTERN.match(value):
            raise ValueError(f"site must be lower-case letters, digits, - or _, not {value!r}")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be HOST:PORT, not {value!r}")
        return value

    @field_validator("console_listen")
    @classmethod
    def _console_listen(cls, value: str | None) -> str | None:
        if value is not None:
            cls._listen(value)
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str | None) -> str | None:
        if value is not None:
            cls._listen(value)
        return value

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str | None) -> str | None:
        if value is not None:
            scheme, sep, rest = value.partition("://")
            if scheme not in ("http", "https") or not sep:
                raise ValueError(f"upstream must be http://HOST:PORT, not {value!r}")
            cls._listen(rest.rstrip("/"))
        return value

    @field_validator("modes")
    @classmethod
    def _modes(cls, value: list[Mode]) -> list[Mode]:
        if not value:
            raise ValueError("at least one mode is needed")
        return value

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def access_log_path(self) -> Path:
        """Where the access log is written and read: ``access_log``, or in ``data_dir``."""
        return self.access_log or self.data_dir / "access.log"


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def load_settings(config_dir: Path) -> Settings:
    """Load ``schoolgate.yaml`` from ``config_dir`` with every path made absolute."""
    if not config_dir.is_dir():
        raise ConfigError.single(config_dir, 0, "configuration folder not found")
    path = config_dir / SETTINGS_FILE
    data, positions = load_yaml(path)
    settings = validate(Settings, data, positions)
    base = config_dir.resolve()
    sources = {
        name: src.model_copy(
            update={
                "path": _resolve(base, src.path) if src.path else None,
                "credentials_file": _resolve(base, src.credentials_file)
                if src.credentials_file
                else None,
            }
        )
        for name, src in settings.sources.items()
    }
    return settings.model_copy(
        update={
            "data_dir": _resolve(base, settings.data_dir),
            "policy": _resolve(base, settings.policy),
            "trust_policy": _resolve(base, settings.trust_policy)
            if settings.trust_policy
            else None,
            "sources": sources,
            "access_log": _resolve(base, settings.access_log) if settings.access_log else None,
            "console_tls": settings.console_tls.model_copy(
                update={
                    "cert": _resolve(base, settings.console_tls.cert),
                    "key": _resolve(base, settings.console_tls.key),
                }
            )
            if settings.console_tls
            else None,
            "auth": settings.auth.model_copy(
                update={
                    "users_file": _resolve(base, settings.auth.users_file)
                    if settings.auth.users_file
                    else None
                }
            ),
        }
    )
