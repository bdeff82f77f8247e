"""The console's pages through Starlette's test client, on a real SQLite store."""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from proxy.cli import cli
from proxy.console.app import create_app
from proxy.store.engine import make_engine, session
from proxy.store.models import Change
from tests.alertsinks import MailSink, mail_sink
from tests.console_accounts import PASSWORD, add_account, code_for
from tests.unit.proxy.configs import write_config
from tests.unit.proxy.test_cli_changes import POLICY

__all__ = ["mail_sink"]  # fixture

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette prefers httpx2 for its test client
    from starlette.testclient import TestClient


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", POLICY)
    add_account(config, "head.teacher", "approver")
    add_account(config, "j.meer", "staff")
    return config


@pytest.fixture
def app(config: Path) -> object:
    return create_app(config)


def client(app: object, config: Path, name: str) -> TestClient:
    c = TestClient(app)  # type: ignore[arg-type]
    page = c.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    response = c.post(
        "/login",
        data={
            "csrf": token.group(1),
            "name": name,
            "password": PASSWORD,
            "code": code_for(config, name),
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return c


def csrf(c: TestClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', c.get(path).text)
    assert found is not None
    return found.group(1)


def rows(config: Path) -> list[Change]:
    engine = make_engine(f"sqlite:///{config.parent / 'store.db'}")
    with session(engine) as s:
        return list(s.scalars(select(Change).order_by(Change.seq)))


def test_sign_in_goes_back_only_to_a_page_of_this_console(app: object, config: Path) -> None:
    """``next`` after sign-in is a local path; another site (``//evil``) is ignored."""
    c = TestClient(app)  # type: ignore[arg-type]
    assert c.get("/inbox", follow_redirects=False).headers["location"] == "/login?next=%2Finbox"
    for given, expected in (
        ("/live", "/live"),
        ("//evil.example/", "/inbox"),
        ("https://evil.example/", "/inbox"),
        ("/\\evil.example", "/inbox"),
    ):
        c = TestClient(app)  # type: ignore[arg-type]
        page = c.get("/login", params={"next": given})
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        response = c.post(
            "/login",
            data={
                "csrf": token.group(1),
                "name": "head.teacher",
                "password": PASSWORD,
                "code": code_for(config, "head.teacher"),
                "next": given,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == expected


def test_every_page_says_do_not_cache_frame_or_load_elsewhere(app: object) -> None:
    """Security headers on every response, signed in or not."""
    response = TestClient(app).get("/login")  # type: ignore[arg-type]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "samesite=strict" in response.headers["set-cookie"].lower()
    assert "httponly" in response.headers["set-cookie"].lower()


def test_staff_cannot_open_the_heads_pages(app: object, config: Path) -> None:
    """A teacher's session is refused the inbox, the live controls and their posts."""
    c = client(app, config, "j.meer")
    token = csrf(c, "/request")
    for path in ("/inbox", "/live", "/status", "/policy", "/changes"):
        assert c.get(path).status_code == 403, path
    response = c.post("/live/suspend", data={"csrf": token, "user": "x", "reason": "r"})
    assert response.status_code == 403


def test_an_illegal_address_cannot_be_requested(app: object, config: Path) -> None:
    """The request form refuses an IWF-listed address, and the page does not repeat it."""
    c = client(app, config, "j.meer")
    response = c.post(
        "/request",
        data={
            "csrf": csrf(c, "/request"),
            "url": "http://iwf-test.example/abuse/test-image.jpg",
            "for": "me",
            "how_long": "lesson",
            "reason": "x",
        },
    )
    assert response.status_code == 400
    assert "can never be overridden" in response.text
    assert rows(config) == []


def test_suspend_and_end_now_are_recorded_as_the_signed_in_person(
    app: object, config: Path
) -> None:
    """The head suspends a user and gives access back; an approved unblock is ended now."""
    staff = client(app, config, "j.meer")
    staff.post(
        "/request",
        data={
            "csrf": csrf(staff, "/request"),
            "url": "games-demo.example",
            "for": "group:pupil",
            "how_long": "fortnight",
            "reason": "game design",
        },
    )
    head = client(app, config, "head.teacher")
    token = csrf(head, "/live")
    assert head.post("/inbox/1/approve", data={"csrf": token, "how_long": "week"}).status_code
    assert "End #1 now" in head.get("/live").text
    head.post("/live/override/1/end", data={"csrf": token})
    head.post(
        "/live/suspend",
        data={"csrf": token, "user": "p.smith", "reason": "misuse", "how_long": "restored"},
    )
    assert "p.smith" in head.get("/live").text
    head.post("/live/restore", data={"csrf": token, "user": "p.smith"})
    assert "Nobody's access is suspended" in head.get("/live").text
    found = [(r.kind, r.actor, json.loads(r.details).get("via")) for r in rows(config)]
    assert found == [
        ("override.request", "j.meer", "console"),
        ("override.approve", "head.teacher", "console"),
        ("override.revoke", "head.teacher", "console"),
        ("access.suspend", "head.teacher", "console"),
        ("access.restore", "head.teacher", "console"),
    ]


def test_the_live_forms_refuse_with_their_reason_and_record_nothing(
    app: object, config: Path
) -> None:
    """Each "live" form that the store refuses shows the page again with the reason and its
    status (409 for what is not in force, 400 for a bad form); a good switch-off goes to /mine."""
    head = client(app, config, "head.teacher")
    token = csrf(head, "/live")
    for path, form, status, reason in (
        ("/live/override/7/end", {}, 409, "no override #7"),
        ("/live/restore", {"user": "p.smith"}, 409, "suspended"),
        ("/live/suspend", {"user": "", "reason": "r"}, 400, "say whose access to suspend"),
        ("/live/switch-off", {"group": "nobody", "how_long": "day"}, 400, "choose the group"),
    ):
        response = head.post(path, data={"csrf": token, **form}, follow_redirects=False)
        assert (response.status_code, reason in response.text) == (status, True), path
    assert rows(config) == []
    response = head.post(
        "/live/switch-off",
        data={"csrf": token, "group": "pupil", "how_long": "week", "reason": "exam"},
        follow_redirects=False,
    )
    assert (response.status_code, response.headers["location"]) == (303, "/mine")
    assert [(r.kind, r.actor) for r in rows(config)] == [("override.request", "head.teacher")]


def test_sign_out_ends_the_session(app: object, config: Path) -> None:
    """After signing out the old cookie opens nothing."""
    c = client(app, config, "j.meer")
    cookie = c.cookies.get("sg_session")
    assert c.post("/logout", data={"csrf": csrf(c, "/mine")}, follow_redirects=False).status_code
    again = TestClient(app)  # type: ignore[arg-type]
    again.cookies.set("sg_session", str(cookie))
    assert again.get("/mine", follow_redirects=False).headers["location"].startswith("/login")


def test_two_person_policy_changes_wait_for_a_second_person(tmp_path: Path) -> None:
    """With policy_changes: two_person a technician's change is a proposal: they cannot apply
    it themselves; an approver does, and the log names both; the CLI refuses to bypass it."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", POLICY)
    settings = config / "schoolgate.yaml"
    settings.write_text(settings.read_text("utf-8") + "policy_changes: two_person\n", "utf-8")
    add_account(config, "tech", "technician")
    add_account(config, "head.teacher", "approver")
    app = create_app(config)
    policy = config / "policy.yaml"
    before = policy.read_text("utf-8")
    edited = before.replace("games: {acceptable_at: lunchtime}", "games: acceptable")
    tech = client(app, config, "tech")
    preview = tech.post("/policy/preview", data={"csrf": csrf(tech, "/policy"), "text": edited})
    assert "group pupil: games acceptable_at:lunchtime → acceptable" in preview.text
    digest = re.search(r'name="digest" value="([0-9a-f]+)"', preview.text)
    assert digest is not None
    tech.post(
        "/policy/apply",
        data={
            "csrf": csrf(tech, "/policy"),
            "text": edited,
            "digest": digest.group(1),
            "reason": "games club",
        },
    )
    assert policy.read_text("utf-8") == before
    assert "Proposal 1 by tech" in tech.get("/policy").text
    assert (
        tech.post("/policy/proposal/1/apply", data={"csrf": csrf(tech, "/policy")}).status_code
        == 403
    )
    assert policy.read_text("utf-8") == before
    head = client(app, config, "head.teacher")
    head.post("/policy/proposal/1/apply", data={"csrf": csrf(head, "/policy")})
    assert policy.read_text("utf-8") == edited
    applied = rows(config)[-1]
    assert (applied.kind, applied.actor, applied.approved_by) == (
        "policy.apply",
        "tech",
        "head.teacher",
    )
    other = tmp_path / "other.yaml"
    other.write_text(before, "utf-8")
    result = CliRunner().invoke(
        cli,
        ["policy", "apply", str(other), "--by", "tech", "--reason", "r", "--config", str(config)],
    )
    assert result.exit_code == 1
    assert "policy_changes is two_person" in result.stderr


def test_the_requester_is_told_of_the_answer_by_email(tmp_path: Path, mail_sink: MailSink) -> None:
    """A teacher with an e-mail address on their account gets the decline and its reason."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", POLICY)
    settings = config / "schoolgate.yaml"
    settings.write_text(
        settings.read_text("utf-8")
        + "alerts:\n"
        + f"  smtp: {{host: 127.0.0.1, port: {mail_sink.port}, sender: gate@school.test}}\n",
        "utf-8",
    )
    add_account(config, "head.teacher", "approver")
    result = CliRunner().invoke(
        cli,
        [
            "console",
            "users",
            "add",
            "j.meer",
            "--role",
            "staff",
            "--email",
            "j.meer@school.test",
            "--config",
            str(config),
        ],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.stderr
    app = create_app(config)
    staff = client(app, config, "j.meer")
    staff.post(
        "/request",
        data={
            "csrf": csrf(staff, "/request"),
            "url": "games-demo.example",
            "for": "me",
            "how_long": "lesson",
            "reason": "coding club",
        },
    )
    head = client(app, config, "head.teacher")
    head.post(
        "/inbox/1/decline", data={"csrf": csrf(head, "/live"), "reason": "not in school time"}
    )
    deadline = time.monotonic() + 10
    while not mail_sink.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(mail_sink.messages) == 1
    message = mail_sink.messages[0]
    assert message["To"] == "j.meer@school.test"
    subject = " ".join(str(message["Subject"]).split())  # long headers are folded
    assert subject.endswith("declined by head.teacher: not in school time")


def test_list_pages_paginate(app: object, config: Path) -> None:
    """Thirty requests are one full page of 25 and a second of 5, with links between them."""
    from datetime import UTC, datetime

    from proxy.store import control

    engine = make_engine(f"sqlite:///{config.parent / 'store.db'}")
    now = datetime.now(UTC)
    with session(engine) as s:
        for n in range(30):
            control.request_override(
                s, what_kind="host", what=f"site{n}.example", scope_kind="group", scope="pupil",
                starts=now, ends=None, reason="r", requested_by="j.meer", now=now,
            )  # fmt: skip
    head = client(app, config, "head.teacher")
    first = head.get("/inbox").text
    assert first.count("Decide on request #") == 25
    assert 'href="/inbox?page=2" rel="next"' in first
    second = head.get("/inbox?page=2").text
    assert second.count("Decide on request #") == 5
    assert 'href="/inbox?page=1" rel="prev"' in second
    assert 'rel="next"' not in second
