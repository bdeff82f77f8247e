"""The web console in a real browser: headless Debian Chromium driven by Playwright.

One ``schoolgate run --console`` (the real proxy, which starts and supervises
the console) serves every test in this module. People sign in with their
password and TOTP code; a member of staff asks for an unblock from a real
block page served by the proxy, a second person approves it, and the proxy
then lets the page through; a decline is seen by the requester; the
requester's own approval, a governor's posts and a post without the CSRF
token are refused; an idle session ends. axe-core (vendored from npm, with
its licence, under ``vendor/axe-core``) checks every page for serious and
critical accessibility violations, and a screenshot of each page is saved
under ``artifacts/console/``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import update

from proxy.console.models import ConsoleSession, ConsoleUser
from proxy.content.learned import LEARNED_FILE, LearnedEntry, append
from proxy.store.engine import make_engine, session
from tests.console_accounts import PASSWORD, add_account
from tests.integration.harness import (
    ROOT,
    TEST_POLICY,
    Gateway,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium")
ARTIFACTS = ROOT / "artifacts" / "console"
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
POLICY = TEST_POLICY.replace(
    "  users:\n",
    "  users:\n    - {name: deputy.head, group: head}\n    - {name: j.meer, group: staff}\n",
).replace("approvers: [head.teacher]", "approvers: [head.teacher, deputy.head]")
ROLES = {
    "head.teacher": "approver",
    "deputy.head": "approver",
    "j.meer": "staff",
    "it.tech": "technician",
    "a.governor": "governor",
    "a.dsl": "dsl",
}


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    """Skipped locally without Chromium; in CI (``CI=true``) that is a failure, never a skip."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium must be installed in CI (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")


class Console:
    """The running gateway, its console's address, and each person's TOTP secret."""

    def __init__(self, gateway: Gateway, port: int, secrets: dict[str, str | None]) -> None:
        self.gateway = gateway
        self.url = f"http://127.0.0.1:{port}"
        self.secrets = secrets
        self.engine = make_engine(f"sqlite:///{gateway.data_dir / 'schoolgate.db'}")

    def code(self, name: str) -> str:
        """The person's current code, their app's next one if this one was used already."""
        secret = self.secrets[name]
        if secret is None:
            return ""
        with session(self.engine) as s:
            last = s.query(ConsoleUser.totp_last_step).filter(ConsoleUser.name == name).scalar()
        totp = pyotp.TOTP(secret)
        step = int(time.time() // 30)
        # A code is accepted once, and the console takes the codes of the steps beside the
        # present one (an app's clock 30 s out): after a used code comes the app's next one,
        # waited for only when even that is more than a step ahead (a third sign-in in 30 s).
        target = step if last is None or last < step else last + 1
        while int(time.time() // 30) + 1 < target:
            time.sleep((target - 1) * 30 - time.time() + 0.5)
        return totp.at(target * 30)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, origin_ca: OriginCA) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console")
    config_dir, data_dir = tmp / "config", tmp / "var"
    port = free_port()
    write_config(config_dir, data_dir, free_port(), POLICY)
    settings = config_dir / "schoolgate.yaml"
    settings.write_text(
        settings.read_text("utf-8")
        + f"console_listen: 127.0.0.1:{port}\nconsole_url: http://127.0.0.1:{port}\n",
        "utf-8",
    )
    secrets = {name: add_account(config_dir, name, role) for name, role in ROLES.items()}
    gateway = start_gateway(tmp, origin_ca, "--console")
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the console did not start: {gateway.stderr()}") from None
            time.sleep(0.1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield Console(gateway, port, secrets)
    stop_gateway(gateway)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


def new_page(browser: Any, console: Console, *, through_proxy: bool = False) -> Any:
    """A fresh browser profile; ``through_proxy``: its web traffic goes through the filter
    (the console itself, on 127.0.0.1, is reached directly, as Chromium does for loopback)."""
    options: dict[str, Any] = {"bypass_csp": True, "viewport": {"width": 1000, "height": 800}}
    if through_proxy:
        options["proxy"] = {"server": f"http://127.0.0.1:{console.gateway.port}"}
    context = browser.new_context(**options)
    return context.new_page()


def check_page(page: Any, name: str) -> None:
    """No serious or critical axe-core violations; a full-page screenshot for the record."""
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           nodes: v.nodes.map(n => n.target.join(' '))}));
        }"""
    )
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {bad}"
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, console: Console, name: str, *, code: str | None = None) -> None:
    if "/login" not in page.url:
        page.goto(f"{console.url}/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.fill("#code", console.code(name) if code is None else code)
    submit(page, "button[type=submit]")
    page.wait_for_load_state()


def submit(page: Any, selector: str) -> None:
    """Click and wait for the page it leads to (a slow server must not read as an empty page)."""
    with page.expect_navigation(wait_until="load", timeout=60_000):
        page.click(selector)


def csrf_of(page: Any) -> str:
    return str(page.locator("input[name=csrf]").first.get_attribute("value"))


def test_sign_in_needs_the_password_and_the_code(browser: Any, console: Console) -> None:
    """A right password with a wrong code is refused; with the right code the head is in."""
    page = new_page(browser, console)
    page.goto(f"{console.url}/inbox")
    assert "/login" in page.url
    check_page(page, "login")
    sign_in(page, console, "head.teacher", code="000000")
    assert page.locator(".error").inner_text() == "the name, password or code is not right"
    sign_in(page, console, "head.teacher")
    assert page.url.endswith("/inbox")
    assert "Unblock requests waiting for you" in page.content()
    check_page(page, "inbox-empty")


def test_staff_request_from_the_block_page_is_approved_by_a_second_person(
    browser: Any, console: Console
) -> None:
    """The block page links staff to the console's form; the head approves; the site opens."""
    staff = new_page(browser, console, through_proxy=True)
    staff.goto("http://social-demo.example/profile")
    assert "This site is blocked" in staff.content()
    reference = staff.locator("#reference").inner_text()
    check_page(staff, "block-page")
    submit(staff, "#console-request")
    assert "/login" in staff.url
    sign_in(staff, console, "j.meer", code="")
    assert "/request" in staff.url
    assert staff.input_value("#url") == "social-demo.example/profile"
    assert reference in staff.content()
    staff.select_option("#for", "group:guest")
    staff.fill("#reason", "Year 10 media studies: how platforms present profiles")
    check_page(staff, "request-form")
    submit(staff, "form[action='/request'] button[type=submit]")
    assert "/mine" in staff.url
    assert "waiting for approval" in staff.content()
    check_page(staff, "my-requests")

    head = new_page(browser, console)
    head.goto(f"{console.url}/inbox")
    sign_in(head, console, "deputy.head")
    submit(head, "text=Decide on request")
    content = head.content()
    assert "social media and chat" in content  # the category in plain English
    assert "What each group gets there now" in content
    check_page(head, "inbox-request")
    head.check("#ap-lesson")
    submit(head, "form[action$='/approve'] button[type=submit]")
    assert "/inbox" in head.url

    staff.goto(f"{console.url}/mine")
    assert "approved (in force) by deputy.head" in staff.content()
    # The proxy reads the store every few seconds; then the page is no longer blocked (the
    # made-up host has no origin, so what comes back is the proxy's 502, not the block page).
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = staff.goto("http://social-demo.example/profile")
        if response is not None and response.status != 403:
            break
        time.sleep(0.5)
    assert response is not None
    assert response.status != 403
    assert "This site is blocked" not in staff.content()
    with session(console.engine) as s:
        from proxy.store.models import Change

        kinds = {c.kind: c for c in s.query(Change).all()}
    approve = kinds["override.approve"]
    assert approve.actor == "deputy.head"
    assert '"via":"console"' in approve.details
    assert kinds["override.request"].actor == "j.meer"


def test_a_declined_request_shows_its_reason_to_the_requester(
    browser: Any, console: Console
) -> None:
    """The head declines with a reason; the teacher's page shows "declined" and the reason."""
    staff = new_page(browser, console)
    staff.goto(f"{console.url}/request")
    sign_in(staff, console, "j.meer", code="")
    staff.fill("#url", "games-demo.example")
    staff.fill("#reason", "Friday afternoon treat")
    submit(staff, "form[action='/request'] button[type=submit]")
    request_id = re.search(r"Request #(\d+) has been sent", staff.content())
    assert request_id is not None
    head = new_page(browser, console)
    head.goto(f"{console.url}/inbox/{request_id.group(1)}")
    sign_in(head, console, "head.teacher")
    head.fill("#decline-reason", "Not for lesson time: try the lunchtime club")
    submit(head, "form[action$='/decline'] button[type=submit]")
    staff.goto(f"{console.url}/mine")
    row = staff.locator("tr", has_text="games-demo.example").first.inner_text()
    assert "declined" in row
    assert "Not for lesson time: try the lunchtime club" in row


def test_the_requester_cannot_approve_their_own_request(browser: Any, console: Console) -> None:
    """The head asks, then tries to approve it: refused, and it is still waiting."""
    head = new_page(browser, console)
    head.goto(f"{console.url}/request")
    sign_in(head, console, "head.teacher")
    head.fill("#url", "play.example")
    head.fill("#reason", "Assembly on online games")
    submit(head, "form[action='/request'] button[type=submit]")
    request_id = re.search(r"Request #(\d+) has been sent", head.content())
    assert request_id is not None
    head.goto(f"{console.url}/inbox/{request_id.group(1)}")
    assert "another approver must decide" in head.content()
    submit(head, "form[action$='/approve'] button[type=submit]")
    assert "a second person must (two-person rule)" in head.locator(".error").inner_text()
    assert "waiting for approval" in head.content()


def test_a_governor_can_read_but_not_change_anything(browser: Any, console: Console) -> None:
    """The governor's pages open; every post they make, with their own CSRF token, is 403."""
    gov = new_page(browser, console)
    gov.goto(f"{console.url}/changes")
    sign_in(gov, console, "a.governor")
    assert "/changes" in gov.url
    assert "The anchor to write down" in gov.content()
    check_page(gov, "changes")
    for path, name in (("/annual-review", "annual-review"), ("/report", "report-form")):
        gov.goto(f"{console.url}{path}")
        check_page(gov, name)
    gov.goto(f"{console.url}/changes/verify")
    assert "intact" in gov.content()
    gov.goto(f"{console.url}/changes")
    token = csrf_of(gov)
    for path in (
        "/inbox/1/approve",
        "/inbox/1/decline",
        "/live/suspend",
        "/live/restore",
        "/live/override/1/end",
        "/policy/apply",
        "/request",
        "/live/switch-off",
    ):
        response = gov.request.post(
            f"{console.url}{path}",
            form={"csrf": token, "reason": "x", "user": "j.meer", "how_long": "lesson"},
            fail_on_status_code=False,
            max_redirects=0,
        )
        assert response.status == 403, path
    for path in ("/inbox", "/status", "/policy", "/live"):
        gov.goto(f"{console.url}{path}")
        assert "Not allowed" in gov.content(), path


def test_a_post_without_the_csrf_token_is_refused(browser: Any, console: Console) -> None:
    """A signed-in approver's post with no token, or another token, changes nothing (403)."""
    head = new_page(browser, console)
    head.goto(f"{console.url}/live")
    sign_in(head, console, "head.teacher")
    for form in ({}, {"csrf": "forged"}):
        response = head.request.post(
            f"{console.url}/live/suspend",
            form={**form, "user": "j.meer", "reason": "csrf", "how_long": "restored"},
            fail_on_status_code=False,
            max_redirects=0,
        )
        assert response.status == 403
    head.goto(f"{console.url}/live")
    assert "Nobody's access is suspended" in head.content()
    check_page(head, "in-force")


def test_an_idle_session_ends(browser: Any, console: Console) -> None:
    """A session unused for longer than the idle timeout sends the person to sign in again."""
    tech = new_page(browser, console)
    tech.goto(f"{console.url}/status")
    sign_in(tech, console, "it.tech")
    assert "/status" in tech.url
    with session(console.engine) as s:
        s.execute(
            update(ConsoleSession)
            .where(ConsoleSession.user == "it.tech")
            .values(last_seen=datetime.now(UTC) - timedelta(minutes=31))
        )
    tech.goto(f"{console.url}/status")
    assert "/login" in tech.url
    assert "Your session has ended" in tech.content()


def test_the_technicians_pages(browser: Any, console: Console) -> None:
    """Status shows unconfigured alerts in red; "test a URL" is explain; a policy change is
    previewed with its impact, applied, and recorded as the technician's."""
    tech = new_page(browser, console)
    tech.goto(f"{console.url}/status")
    sign_in(tech, console, "it.tech")
    assert tech.locator(".bad", has_text="NOT configured").count() == 2
    check_page(tech, "status")
    tech.goto(f"{console.url}/test?url=http://casino-demo.example/&as=group&value=pupil")
    assert "Blocked" in tech.locator("h2").first.inner_text()
    assert "gambling" in tech.content()
    assert "casino-demo.example" in tech.locator("table").first.inner_text()  # every match
    check_page(tech, "test-a-url")
    for path, name in (("/lists", "list-updates"), ("/search?reference=SG-00000000", "search")):
        tech.goto(f"{console.url}{path}")
        check_page(tech, name)
    tech.goto(f"{console.url}/policy")
    check_page(tech, "policy")
    text = tech.input_value("#text").replace(
        "gambling: {lists: [ut1/gambling]}", "gambling: {lists: [ut1/gambling], incident: gambling}"
    )
    text = text.replace("      gambling: unacceptable\n", "      gambling: blocked\n", 1)
    tech.fill("#text", text)
    submit(tech, "form[action='/policy/preview'] button[type=submit]")
    assert "group pupil: gambling unacceptable → blocked" in tech.content()
    check_page(tech, "policy-preview")
    tech.fill("#reason", "Gambling sites: block without an incident for pupils")
    submit(tech, "form[action='/policy/apply'] button[type=submit]")
    assert "/changes" in tech.url
    assert "policy change applied" in tech.content()
    assert "it.tech" in tech.locator("tbody tr").first.inner_text()
    installed = (console.gateway.config_dir / "policy.yaml").read_bytes()
    assert b"gambling: blocked" in installed
    assert b"\r" not in installed  # the browser's CR LF line ends are not installed
    # Learned pages: a page content analysis learned, rejected with a reason in the browser.
    found = LearnedEntry("learned-demo.example/hot", "adult", 140, ("free porn",),
                         datetime.now(UTC).isoformat())  # fmt: skip
    append(console.gateway.data_dir / LEARNED_FILE, found)
    tech.goto(f"{console.url}/learned")
    assert "learned-demo.example/hot" in tech.content()
    check_page(tech, "learned")
    tech.fill("#why-1", "A clinic's page about sexual health")
    submit(tech, "form[action='/learned/decide'] button[value=reject]")
    assert "the entry is rejected" in tech.content()


def test_the_safeguarding_lead_has_a_home_page(browser: Any, console: Console) -> None:
    """The DSL signs in to their home page (their queue and timelines come next)."""
    dsl = new_page(browser, console)
    sign_in(dsl, console, "a.dsl")
    assert dsl.url.endswith("/home")
    check_page(dsl, "dsl-home")
