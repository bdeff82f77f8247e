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
import hashlib
import hmac
import html
import ipaddress
import logging
import time

from mitmproxy import connection, exceptions, http
from mitmproxy.addons.proxyauth import is_http_proxy, parse_http_basic_auth

from addons import facts
from addons.facts import LOGIN, login_of
from proxy import errorpage
from proxy.identity import parse_ip
from proxy.logins import (
    BINDINGS_FILE,
    Login,
    LoginBindings,
    LoginChecker,
    LoginThrottle,
    valid_name,
)
from proxy.review import load_key
from proxy.settings import Auth
from proxy.watch import FileWatch
from proxy.yamlfile import ConfigError

LOGOUT = "schoolgate.login.logout"
log = logging.getLogger("schoolgate.login")
__all__ = ["LOGIN", "ProxyLogin", "login_of"]


def _page(
    status: int,
    title: str,
    text: str,
    headers: dict[str, str],
    form: str = "",
    *,
    school: str = "Schoolgate",
) -> http.Response:
    # The school's name and style (proxy/errorpage.py); ``form`` is markup built here, escaped.
    body = errorpage.notice(title, text, school=school, form=form)
    return http.Response.make(
        status,
        body,
        {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store", **headers},
    )


class ProxyLogin:
    def __init__(self, loader: facts.Policies) -> None:
        self.loader = loader
        self.refused = 0
        self.checker = LoginChecker([])
        self.bindings: LoginBindings | None = None
        self._auth: Auth | None = None
        self._users = FileWatch()  # the users file (proxy/watch.py, as for the policy)
        self._checked = 0.0
        self.throttle = LoginThrottle()
        self._csrf_key: bytes | None = None

    # -- state --------------------------------------------------------------------------

    def _rebuild(self) -> None:
        settings = self.loader.filterset.settings
        auth = settings.auth
        # Stamped before it is read: an edit made while reading is picked up next time.
        self._users.watch([auth.users_file] if auth.users_file else [])
        self.checker = LoginChecker.from_settings(auth)  # raises ConfigError
        self.bindings = LoginBindings(settings.data_dir / BINDINGS_FILE)
        # The same throttle object: counts survive a reload of the users file.
        self.throttle.configure(
            free=auth.free_failures,
            lockout_after=auth.lockout_after,
            lockout_seconds=auth.lockout_minutes * 60.0,
        )
        self._auth = auth

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
            if auth is not self._auth or self._users.changed():
                try:
                    self._rebuild()
                    log.info("logins reloaded")
                except ConfigError as exc:
                    self._auth = auth  # tried: retried when the file changes again
                    log.error("users file not reloaded, keeping the last good one: %s", exc)
        assert self._auth is not None
        return self._auth

    def login_of_client(self, client: connection.Client) -> Login | None:
        """The login of a client connection: from its CONNECT, or its address's binding."""
        found = facts.client_login(client)
        if found is not None:
            return found
        return self.bindings.login_at(client.peername[0]) if self.bindings else None

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
                bound = self.bindings.login_at(flow.client_conn.peername[0])
                if bound is not None:
                    flow.metadata[LOGIN] = bound
        except Exception:
            self._failed(flow, is_http_proxy(flow))
        login = login_of(flow)
        if login is not None and flow.response is None:
            facts.set_client_login(flow.client_conn, login)

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
            known = facts.client_login(flow.client_conn)
            if known is not None:
                flow.metadata[LOGIN] = known
            elif proxied:
                await self._proxy_login(flow, auth)
            if login_of(flow) is None and flow.response is None and self.bindings:
                bound = self.bindings.login_at(flow.client_conn.peername[0])
                if bound is not None:
                    flow.metadata[LOGIN] = bound
        except Exception:
            self._failed(flow, proxied)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.pop(LOGOUT, False):
            try:
                self._logout(
                    flow, flow.client_conn.peername[0], self.loader.filterset.policy.school
                )
            except Exception:
                log.exception("sign-out failed")  # the 403 placeholder stands

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

    async def _check(self, header_value: str, ip: str) -> str | float | None:
        """The user named by a Basic credentials header if the password is right; else None,
        or the seconds to wait when this user or address is throttled (nothing was checked)."""
        if not header_value or not self.checker.enabled:
            return None
        try:
            _, user, password = parse_http_basic_auth(header_value)
        except ValueError:
            user, password = "", ""
        now = time.monotonic()
        wait = self.throttle.wait(user, ip, now)
        if wait > 0:
            return wait
        if user and self.checker.cached(user, password):
            self.throttle.succeeded(user, ip)
            return user
        self.throttle.attempt(user, ip, now)  # counted now, so a burst of guesses waits too
        ok = bool(user) and await asyncio.to_thread(self.checker.check, user, password)
        if ok:
            self.throttle.succeeded(user, ip)
            return user
        for key in self.throttle.failed(user, ip, time.monotonic()):
            log.warning(
                "login locked out for %d minutes after %d wrong passwords: %s",
                self._current().lockout_minutes,
                self.throttle.lockout_after,
                key,
            )
        return None

    async def _proxy_login(self, flow: http.HTTPFlow, auth: Auth) -> None:
        value = flow.request.headers.get("Proxy-Authorization")
        if value is None:
            if auth.required:
                self._refuse(flow, proxy=True)
            return
        del flow.request.headers["Proxy-Authorization"]
        if not self.checker.enabled:
            return  # logins are not configured: nothing to check against, the address decides
        user = await self._check(value, flow.client_conn.peername[0])
        if isinstance(user, str):
            flow.metadata[LOGIN] = Login(user, "proxy")
        else:
            self._refuse(flow, proxy=True, wait=user)

    def _csrf(self, ip: str, user: str) -> str:
        """The sign-out token for this address and user (the install's key, shared by workers)."""
        if self._csrf_key is None:
            self._csrf_key = load_key(self.loader.filterset.settings.data_dir)
        message = f"schoolgate logout\0{ip}\0{user}".encode()
        return hmac.new(self._csrf_key, message, hashlib.sha256).hexdigest()[:32]

    def _logout_form(self, ip: str, user: str) -> str:
        token = html.escape(self._csrf(ip, user))
        return (
            "<form method='post' action='/logout'>"
            f"<input type='hidden' name='csrf' value='{token}'>"
            "<button type='submit'>Sign out</button></form>"
        )

    async def _login_page(self, flow: http.HTTPFlow, auth: Auth) -> None:
        ip = flow.client_conn.peername[0]
        school = self.loader.filterset.policy.school
        if flow.request.path.split("?", 1)[0] == "/logout":
            if flow.request.method == "POST":
                # Answered now so nothing else acts on it; decided at `request`, with the body.
                flow.metadata[LOGOUT] = True
                flow.response = _page(
                    403, "Sign out", "The sign-out form did not arrive.", {}, school=school
                )
            else:
                self._logout(flow, ip, school)
            return
        user = await self._check(flow.request.headers.get("Authorization", ""), ip)
        if not isinstance(user, str):
            self._refuse(flow, proxy=False, wait=user)
            return
        assert self.bindings is not None
        self.bindings.bind(ip, user, auth.bind_minutes)
        flow.metadata[LOGIN] = Login(user, "page")
        flow.response = _page(
            200,
            "Signed in",
            f"You are signed in as {user} on this device for {auth.bind_minutes} minutes.",
            {},
            self._logout_form(ip, user),
            school=school,
        )

    def _logout(self, flow: http.HTTPFlow, ip: str, school: str) -> None:
        """POST with this address's token signs out; anything else only shows the button."""
        # Fresh: the address may have been bound by another worker within the last second.
        user = self.bindings.user_at(ip, fresh=True) if self.bindings else None
        if user is None:
            flow.response = _page(200, "Signed out", "You are not signed in.", {}, school=school)
            return
        if flow.request.method == "POST":
            sent = flow.request.urlencoded_form.get("csrf", "")
            if hmac.compare_digest(sent.encode(), self._csrf(ip, user).encode()):
                assert self.bindings is not None
                self.bindings.unbind(ip)
                flow.response = _page(200, "Signed out", "You are signed out.", {}, school=school)
                return
            log.warning("sign-out without a valid token from %s: ignored", ip)
            status = 403
        else:
            status = 200
        flow.response = _page(
            status,
            "Sign out",
            f"You are signed in as {user}. Press the button to sign out.",
            {},
            self._logout_form(ip, user),
            school=school,
        )

    def _refuse(self, flow: http.HTTPFlow, *, proxy: bool, wait: float | None = None) -> None:
        self.refused += 1
        school = self.loader.filterset.policy.school
        if wait is not None:
            minutes = max(1, round(wait / 60))
            flow.response = _page(
                429,
                "Too many sign-in attempts",
                "Too many wrong passwords for this user or from this device. "
                f"Try again in {'a minute' if wait < 90 else f'{minutes} minutes'}.",
                {"Retry-After": str(max(1, round(wait)))},
                school=school,
            )
            return
        realm = school.replace('"', "'")
        if proxy:
            flow.response = _page(
                407,
                "Sign-in needed",
                "The school's web filter needs your user name and password.",
                {"Proxy-Authenticate": f'Basic realm="{realm}"'},
                school=school,
            )
        else:
            flow.response = _page(
                401,
                "Sign in",
                "Sign in with your school user name and password.",
                {"WWW-Authenticate": f'Basic realm="{realm}"'},
                school=school,
            )

    def _failed(self, flow: http.HTTPFlow, proxy: bool) -> None:
        log.exception("login check failed; refusing the request")
        flow.metadata.pop(LOGIN, None)
        self._refuse(flow, proxy=proxy)
