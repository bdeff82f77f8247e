"""The safeguarding lead's console in a real browser: alerts, the queue, the timeline, C2.

The real proxy (``schoolgate run --console``) with its alerts going to a
local SMTP server (aiosmtpd) and webhook receiver. A pupil browses through
the proxy, hits the IWF test list and searches about suicide: both alert at
once by e-mail and webhook. The DSL, in headless Chromium, sees them first in
the queue, opens the incident and sees the pages the pupil opened before it,
fills form C2 (an IWF address typed as a concern is refused), and the deputy
signs it from their own login. axe-core checks each page; screenshots go to
``artifacts/console/dsl/``.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alertsinks import MailSink, WebhookSink, mail_sink, webhook_sink
from tests.console_accounts import add_account
from tests.integration.harness import (
    PUPIL,
    ROOT,
    TEST_POLICY,
    Origin,
    OriginCA,
    free_port,
    start_gateway,
    stop_gateway,
    write_config,
)
from tests.integration.test_console_browser import (
    ARTIFACTS,
    Console,
    _needs_chromium,
    browser,
    check_page,
    new_page,
    sign_in,
    submit,
)

__all__ = ["_needs_chromium", "browser", "mail_sink", "webhook_sink"]  # fixtures
pytestmark = pytest.mark.integration
POLICY = TEST_POLICY.replace(
    "  users:\n", "  users:\n    - {name: pupil.one, group: pupil, ips: [127.0.0.2]}\n", 1
)
IWF_URL = "http://iwf-test.example/abuse/test-image.jpg"
ROLES = {"a.dsl": "dsl", "b.deputy": "reviewer"}


@pytest.fixture
def dsl_console(
    tmp_path: Path, origin_ca: OriginCA, mail_sink: MailSink, webhook_sink: WebhookSink
) -> Iterator[Console]:
    config_dir, data_dir = tmp_path / "config", tmp_path / "var"
    port = free_port()
    write_config(config_dir, data_dir, free_port(), POLICY)
    with (config_dir / "schoolgate.yaml").open("a", encoding="utf-8") as settings:
        settings.write(
            f"console_listen: 127.0.0.1:{port}\nconsole_url: http://127.0.0.1:{port}\n"
            "alerts:\n"
            f"  illegal: {{webhook: '{webhook_sink.url}', email: [dsl@school.example]}}\n"
            f"  smtp: {{host: 127.0.0.1, port: {mail_sink.port}, sender: filter@school.example}}\n"
        )
    for name in ("escalation.yaml", "concerning-terms.yaml"):
        shutil.copy(ROOT / "config" / name, config_dir / name)
    secrets = {name: add_account(config_dir, name, role) for name, role in ROLES.items()}
    gateway = start_gateway(tmp_path, origin_ca, "--console")
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the console did not start: {gateway.stderr()}") from None
            time.sleep(0.1)
    (ARTIFACTS / "dsl").mkdir(parents=True, exist_ok=True)
    yield Console(gateway, port, secrets)
    stop_gateway(gateway)


def wait_until(check: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not check():
        time.sleep(0.1)


def test_a_dsl_is_alerted_sees_the_queue_and_timeline_and_c2_is_signed_by_two(  # noqa: PLR0915 (one walk through, as the DSL does it)
    browser: Any,
    dsl_console: Console,
    origin: Origin,
    mail_sink: MailSink,
    webhook_sink: WebhookSink,
) -> None:
    console = dsl_console
    gateway = console.gateway
    # The DSL has the queue open before anything happens: no badge yet.
    dsl = new_page(browser, console)
    dsl.goto(f"{console.url}/queue")
    sign_in(dsl, console, "a.dsl")
    assert "/queue" in dsl.url
    assert dsl.locator("#live-badge").is_hidden()
    # The pupil reads two pages, is blocked on an adult site, hits the IWF list, searches.
    for path in ("/maths/fractions", "/history/tudors"):
        status, _ = gateway.get(
            f"http://127.0.0.1:{origin.http_port}{path}",
            client=PUPIL,
            headers={"Host": "homework.example"},
        )
        assert status == 200
    assert gateway.get("http://adult-demo.example/page", client=PUPIL)[0] == 403
    started = time.monotonic()
    assert gateway.get(IWF_URL, client=PUPIL)[0] == 403
    gateway.get(
        f"http://127.0.0.1:{origin.http_port}/search?q=how+to+kill+myself",
        client=PUPIL,
        headers={"Host": "www.google.co.uk"},
    )
    # Both alerts arrive at once, by e-mail and webhook, within seconds.
    wait_until(lambda: len(mail_sink.messages) >= 2 and len(webhook_sink.calls) >= 2)
    took = time.monotonic() - started
    subjects = sorted(str(m["Subject"]) for m in mail_sink.messages)
    assert any("Illegal content incident" in s for s in subjects), subjects
    assert any("Search about suicide" in s for s in subjects), subjects
    assert took < 15
    sent = (
        b"".join(m.as_bytes() for m in mail_sink.messages) + json.dumps(webhook_sink.calls).encode()
    )
    assert b"iwf-test" not in sent
    assert b"kill myself" not in sent

    # The open page's live badge says so, without a reload (server-sent events).
    dsl.wait_for_selector("#live-badge:has-text('2 urgent incidents open')", timeout=15_000)
    check_page(dsl, "dsl/live-badge")

    # The queue: illegal first, then the suicide search, then the adult site.
    wait_until(
        lambda: dsl.reload() is not None and dsl.locator("table.queue tbody tr").count() >= 3
    )
    rows = dsl.locator("table.queue tbody tr")
    assert "illegal" in rows.nth(0).inner_text()
    assert "suicide" in rows.nth(1).inner_text()
    assert "adult" in rows.nth(2).inner_text()
    assert "iwf-test" not in dsl.content()
    # Every alert's delivery is stored and shown (the writer applies them within seconds).
    wait_until(
        lambda: (
            dsl.reload() is not None
            and dsl.locator("table.deliveries tbody tr", has_text="delivered").count() >= 4
        )
    )
    shown = dsl.locator("table.deliveries").inner_text()
    assert shown.count("delivered") >= 4  # two alerts, each by e-mail and webhook
    assert "email" in shown
    assert "webhook" in shown
    check_page(dsl, "dsl/queue")

    # The illegal incident: the pages the pupil opened before it, no address anywhere.
    submit(dsl, "table.queue tbody tr:nth-child(1) a")
    content = dsl.content()
    assert "homework.example/maths/fractions" in content
    assert "homework.example/history/tudors" in content
    assert "(address withheld: illegal list)" in content
    assert "iwf-test" not in content
    check_page(dsl, "dsl/incident-illegal")
    incident_url = dsl.url

    # C2: an IWF address typed as the concern is refused, and not typed back.
    dsl.fill("#c2-first_position", "Designated Safeguarding Lead")
    dsl.select_option("#c2-second_reviewer", "b.deputy")
    dsl.fill("#c2-second_position", "Deputy DSL")
    dsl.fill("#c2-computer", "DSL laptop, safeguarding office")
    dsl.fill("#c2-reason", "an attempt on the IWF list")
    dsl.fill("#c2-concern", "pupil typed iwf-test.example/abuse into the address bar")
    dsl.fill("#c2-conclusion", "referred to the police; device isolated")
    dsl.fill("#c2-action_taken", "police informed, parents told")
    submit(dsl, "#submit-c2")
    assert "write no web address or site name" in dsl.locator(".error").inner_text()
    assert "iwf-test" not in dsl.content()
    dsl.fill("#c2-concern", "a deliberate attempt, by the pupil's own account")
    dsl.check("#c2-referred-police")  # by its label's words too: a real checkbox
    assert dsl.get_by_label("the police").is_checked()
    submit(dsl, "#submit-c2")
    assert "Referred outside the school to" in dsl.content()
    assert "the police" in dsl.locator("dl.c2").inner_text()
    assert "has not signed yet" in dsl.content()
    assert dsl.locator("#sign-c2").count() == 0  # the first reviewer cannot sign it
    check_page(dsl, "dsl/incident-c2-waiting")

    # The deputy signs from their own login.
    deputy = new_page(browser, console)
    deputy.goto(incident_url)
    sign_in(deputy, console, "b.deputy")
    submit(deputy, "#sign-c2")
    assert "You have signed the review" in deputy.content()
    assert "has not signed yet" not in deputy.content()
    check_page(deputy, "dsl/incident-c2-signed")

    # The printable C2 (PDF, with both signatures) and the reporting log (C3) open.
    pdf = deputy.request.get(incident_url + "/c2.pdf")
    assert pdf.status == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF")
    assert b"iwf-test" not in pdf.body()
    (ARTIFACTS / "dsl" / "c2.pdf").write_bytes(pdf.body())
    c3 = dsl.request.get(f"{console.url}/incidents/c3.csv")
    assert c3.status == 200
    c3_text = c3.text()
    assert c3_text.startswith("incident,date,time,severity")
    assert "a.dsl & b.deputy" in c3_text
    assert "iwf-test" not in c3_text

    # The incident for the school's safeguarding system, from the page's links.
    dsl.goto(incident_url)
    for layout, first in (("cpoms", "Student,Date,Time"), ("myconcern", "Subject,Date of concern")):
        with dsl.expect_download() as download:
            dsl.click(f"#{layout}-csv")
        exported = Path(download.value.path()).read_text("utf-8")
        assert exported.startswith(first)
        assert "matched the IWF list" in exported
        assert "referred to the police" in exported
        assert "iwf-test" not in exported

    # The pupil's history, and its CSV export.
    dsl.goto(f"{console.url}/pupil?who=pupil.one")
    assert "homework.example" in dsl.content()
    assert "how to kill myself" in dsl.content()
    check_page(dsl, "dsl/pupil")
    with dsl.expect_download() as download:
        dsl.click("#export-csv")
    saved = download.value.path()
    text = Path(saved).read_text("utf-8")
    assert "homework.example/maths/fractions" in text
    assert "iwf-test" not in text
    assert re.search(r"searched,google", text)
