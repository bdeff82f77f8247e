"""ProxyLogin: who is asking, from a proxy login, the login page or a trusted header.

- Explicit-proxy clients (regular mode) send ``Proxy-Authorization: Basic``.
  Right credentials: the login holds for the connection (as mitmproxy's
  ``proxyauth`` does for CONNECT tunnels). Wrong credentials: 407, always.
  No credentials: 407 when ``auth.required``, otherwise the address decides.
- Transparent clients open ``http://LOGIN_HOST/`` and answer a 401 Basic
  prompt; their address is then bound to them for ``auth.bind_minutes``
  (``/logout`` ends it). Every later request from that address, HTTP or HTTPS,
  is theirs.
- A header (``auth.header``) names the user only when the request comes from
  an address listed as trusted; from anyone else it is ignored. It is
  removed before the request goes on, in both cases.

It writes ``flow.metadata["schoolgate.login"]`` (a ``Login``); ``Identify``
turns that into a group. A login only changes the group of a user the policy
names under ``identity.users``; anyone else keeps their address's group.

Failure policy: if checking a login fails with an exception, the request is
refused with 407 (or 401), never let through as someone else; it is logged
and counted with the refusals.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from weakref import WeakKeyDictionary

from mitmproxy import connection, exceptions, http
from mitmproxy.addons.proxyauth import is_http_proxy, parse_http_basic_auth

from addons.policyload import PolicyLoader
from proxy import errorpage
from proxy.identity import parse_ip
from proxy.logins import BINDINGS_FILE, Login, LoginBindings, LoginChecker, valid_name
from proxy.settings import Auth
from proxy.yamlfile import ConfigError

LOGIN = "schoolgate.login"
log = logging.getLogger("schoolgate.login")


def login_of(flow: http.HTTPFlow) -> Login | None:
    found = flow.metadata.get(LOGIN)
    return found if isinstance(found, Login) else None


def _page(
    status: int, title: str, text: str, headers: dict[str, str], school: str = "Schoolgate"
) -> http.Response:
    body = errorpage.notice(title, text, school=school)  # the school's name and style
    return http.Response.make(
        status,
        body,
        {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store", **headers},
    )


class ProxyLogin:
    def __init__(self, loader: PolicyLoader) -> None:
        self.loader = loader
        self.refused = 0
        self.checker = LoginChecker([])
        self.bindings: LoginBindings | None = None
        self._by_client: WeakKeyDictionary[connection.Client, Login] = WeakKeyDictionary()
        self._auth: Auth | None = None
        self._users_mtime = 0.0
        self._checked = 0.0

    # -- state --------------------------------------------------------------------------

    def _users_file_mtime(self, auth: Auth) -> float:
        try:
            return auth.users_file.stat().st_mtime if auth.users_file else 0.0
        except OSError:
            return 0.0

    def _rebuild(self) -> None:
        settings = self.loader.filterset.settings
        auth = settings.auth
        mtime = self._users_file_mtime(auth)
        self.checker = LoginChecker.from_settings(auth)  # raises ConfigError
        self.bindings = LoginBindings(settings.data_dir / BINDINGS_FILE)
        self._auth, self._users_mtime = auth, mtime

    def configure(self, updated: set[str]) -> None:
        if self._auth is None:
            try:
                self._rebuild()
            except ConfigError as exc:
                raise exceptions.OptionsError(str(exc.problems[0])) from None

    def _current(self) -> Auth:
        """The auth settings in force; picks up a changed settings or users file."""
        now = time.monotonic()
        auth = self.loader.filterset.settings.auth
        if auth is not self._auth or now - self._checked > 1.0:
            self._checked = now
            if auth is not self._auth or self._users_file_mtime(auth) != self._users_mtime:
                try:
                    self._rebuild()
                    log.info("logins reloaded")
                except ConfigError as exc:
                    self._auth, self._users_mtime = auth, self._users_file_mtime(auth)
                    log.error("users file not reloaded, keeping the last good one: %s", exc)
        assert self._auth is not None
        return self._auth

    def login_of_client(self, client: connection.Client) -> Login | None:
        """The login of a client connection: from its CONNECT, or its address's binding."""
        found = self._by_client.get(client)
        if found is not None:
            return found
        user = self.bindings.user_at(client.peername[0]) if self.bindings else None
        return Login(user, "binding") if user else None

    # -- hooks --------------------------------------------------------------------------

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        try:
            auth = self._current()
            self._from_header(flow, auth)
            if login_of(flow) is None and is_http_proxy(flow):
                await self._proxy_login(flow, auth)
            if login_of(flow) is None and flow.response is None and self.bindings:
                # A bound address (login page, RADIUS) is its user's from the CONNECT on, so
                # the tunnel's host and TLS decisions are that user's, not the address's.
                user = self.bindings.user_at(flow.client_conn.peername[0])
                if user:
                    flow.metadata[LOGIN] = Login(user, "binding")
        except Exception:
            self._failed(flow, is_http_proxy(flow))
        login = login_of(flow)
        if login is not None and flow.response is None:
            self._by_client[flow.client_conn] = login

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.is_replay:
            return
        proxied = is_http_proxy(flow)
        try:
            auth = self._current()
            self._from_header(flow, auth)
            if flow.request.pretty_host.lower().rstrip(".") == auth.login_host.lower():
                await self._login_page(flow, auth)
                return
            if login_of(flow) is not None:
                return
            known = self._by_client.get(flow.client_conn)
            if known is not None:
                flow.metadata[LOGIN] = known
            elif proxied:
                await self._proxy_login(flow, auth)
            if login_of(flow) is None and flow.response is None and self.bindings:
                user = self.bindings.user_at(flow.client_conn.peername[0])
                if user:
                    flow.metadata[LOGIN] = Login(user, "binding")
        except Exception:
            self._failed(flow, proxied)

    # -- the three ways in ---------------------------------------------------------------

    def _from_header(self, flow: http.HTTPFlow, auth: Auth) -> None:
        if auth.header is None:
            return
        name = auth.header.header
        value = flow.request.headers.get(name)
        if value is None:
            return
        del flow.request.headers[name]
        try:
            peer = parse_ip(flow.client_conn.peername[0])
        except ValueError:
            return
        trusted = any(
            peer.version == net.version and peer in net
            for net in auth.header.trusted
            if isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network)
        )
        if trusted and valid_name(value.strip()):
            flow.metadata[LOGIN] = Login(value.strip(), "header")

    async def _check(self, header_value: str) -> str | None:
        """The user named by a Basic credentials header, if the password is right."""
        if not header_value or not self.checker.enabled:
            return None
        try:
            _, user, password = parse_http_basic_auth(header_value)
        except ValueError:
            return None
        if self.checker.cached(user, password):
            return user
        ok = await asyncio.to_thread(self.checker.check, user, password)
        return user if ok else None

    async def _proxy_login(self, flow: http.HTTPFlow, auth: Auth) -> None:
        value = flow.request.headers.get("Proxy-Authorization")
        if value is None:
            if auth.required:
                self._refuse(flow, proxy=True)
            return
        del flow.request.headers["Proxy-Authorization"]
        if not self.checker.enabled:
            return  # logins are not configured: nothing to check against, the address decides
        user = await self._check(value)
        if user is None:
            self._refuse(flow, proxy=True)
        else:
            flow.metadata[LOGIN] = Login(user, "proxy")

    async def _login_page(self, flow: http.HTTPFlow, auth: Auth) -> None:
        ip = flow.client_conn.peername[0]
        school = self.loader.filterset.policy.school
        if flow.request.path.startswith("/logout"):
            if self.bindings:
                self.bindings.unbind(ip)
            flow.response = _page(200, "Signed out", "You are signed out.", {}, school)
            return
        user = await self._check(flow.request.headers.get("Authorization", ""))
        if user is None:
            self._refuse(flow, proxy=False)
            return
        assert self.bindings is not None
        self.bindings.bind(ip, user, auth.bind_minutes)
        flow.metadata[LOGIN] = Login(user, "page")
        flow.response = _page(
            200,
            "Signed in",
            f"You are signed in as {user} on this device for "
            f"{auth.bind_minutes} minutes. Open /logout here to sign out.",
            {},
            school,
        )

    def _refuse(self, flow: http.HTTPFlow, *, proxy: bool) -> None:
        self.refused += 1
        school = self.loader.filterset.policy.school
        realm = school.replace('"', "'")
        if proxy:
            flow.response = _page(
                407,
                "Sign-in needed",
                "The school's web filter needs your user name and password.",
                {"Proxy-Authenticate": f'Basic realm="{realm}"'},
                school,
            )
        else:
            flow.response = _page(
                401,
                "Sign in",
                "Sign in with your school user name and password.",
                {"WWW-Authenticate": f'Basic realm="{realm}"'},
                school,
            )

    def _failed(self, flow: http.HTTPFlow, proxy: bool) -> None:
        log.exception("login check failed; refusing the request")
        flow.metadata.pop(LOGIN, None)
        self._refuse(flow, proxy=proxy)
