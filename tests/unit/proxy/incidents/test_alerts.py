"""Alerts: an illegal hit reaches the webhook and the mail server, failures are retried."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from proxy.decision import WITHHELD, Decision, Matched
from proxy.identity import Identity
from proxy.incidents.alerts import Alert, Alerter, Email, Webhook, illegal_alert
from proxy.incidents.events import CTIRU_NOTICE, IWF_NOTICE, from_decision
from proxy.settings import Smtp
from tests.alertsinks import MailSink, WebhookSink, mail_sink, webhook_sink

__all__ = ["mail_sink", "webhook_sink"]  # fixtures
URL = "iwf-test.example/abuse/test-image.jpg"


def illegal(list_name: str = "iwf", category: str = "child_abuse", url: str = URL) -> Alert:
    decision = Decision(
        decision="block",
        category=category,
        action="unacceptable",
        incident="illegal",
        incident_type="illegal",
        matched=Matched(list_name, WITHHELD),
        rule="r",
        group="pupil",
        user="p.one",
    )
    identity = Identity("p.one", "pupil", "10.10.0.7", "address")
    when = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    event = from_decision(decision, identity, url, when, b"k" * 32, "SG-ABC")
    assert event is not None
    return illegal_alert(event, "Test School")


def wait_for(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_the_alert_names_the_notice_not_the_url() -> None:
    """The alert text and payload say the IWF list matched, and never the address."""
    alert = illegal()
    assert IWF_NOTICE in alert.text
    assert "SG-ABC" in alert.text
    assert URL not in alert.text
    assert URL not in str(alert.payload)
    assert "iwf-test.example" not in alert.text


def test_webhook_and_email_are_delivered(mail_sink: MailSink, webhook_sink: WebhookSink) -> None:
    """Both channels get the alert: a JSON POST and a mail to every recipient."""
    alerter = Alerter()
    alerter.start()
    smtp = Smtp(host="127.0.0.1", port=mail_sink.port, sender="filter@school.example")
    alerter.send(
        illegal(),
        [Webhook(webhook_sink.url), Email(smtp, ("head@school.example", "dsl@school.example"))],
    )
    wait_for(lambda: webhook_sink.calls and mail_sink.messages)
    alerter.stop()
    assert webhook_sink.calls[0]["kind"] == "illegal"
    assert webhook_sink.calls[0]["notice"] == IWF_NOTICE
    message = mail_sink.messages[0]
    assert message["To"] == "head@school.example, dsl@school.example"
    assert "Illegal content incident" in str(message["Subject"])


def test_a_failing_channel_is_retried(mail_sink: MailSink, webhook_sink: WebhookSink) -> None:
    """A webhook answering 503 and a mail server answering 451 are tried until they take it."""
    webhook_sink.fail = 2
    mail_sink.refuse = 1
    alerter = Alerter(base_delay=0.05)
    alerter.start()
    smtp = Smtp(host="127.0.0.1", port=mail_sink.port)
    alerter.send(illegal(), [Webhook(webhook_sink.url), Email(smtp, ("head@school.example",))])
    wait_for(lambda: len(alerter.delivered) == 2)
    alerter.stop()
    assert len(webhook_sink.calls) == 1
    assert len(mail_sink.messages) == 1
    assert alerter.failed == []


def test_send_never_blocks_on_a_dead_channel() -> None:
    """With nothing listening, send returns at once and the alerter gives up after its tries."""
    alerter = Alerter(max_attempts=2, base_delay=0.01)
    alerter.start()
    started = time.monotonic()
    alerter.send(illegal(), [Webhook("http://127.0.0.1:9/hook")])
    assert time.monotonic() - started < 0.1
    wait_for(lambda: alerter.failed)
    alerter.stop()
    assert alerter.failed[0][:2] == ("illegal", "webhook")


def test_every_try_is_told_to_on_result() -> None:
    """A channel that fails once then works: a retrying failure, then a final success; one
    that always fails: its final failure, with the reason."""
    from proxy.incidents.alerts import Alert, Alerter, Result

    class Flaky:
        name = "flaky"

        def __init__(self, fails: int) -> None:
            self.fails = fails

        def deliver(self, alert: Alert) -> None:
            if self.fails:
                self.fails -= 1
                raise OSError("mail server down")

    told: list[Result] = []
    alerter = Alerter(max_attempts=2, base_delay=0.01, on_result=told.append)
    alerter.start()
    alert = Alert("illegal", "subject", "text", {})
    alerter.send(alert, [Flaky(1)])
    alerter.send(alert, [Flaky(5)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len([r for r in told if r.final]) < 2:
        time.sleep(0.01)
    alerter.stop()
    finals = [r for r in told if r.final]
    assert sorted(r.ok for r in finals) == [False, True]
    failed = next(r for r in finals if not r.ok)
    assert failed.detail == "OSError: mail server down"
    assert failed.attempt == 2
    assert any(not r.final and not r.ok for r in told)


@pytest.mark.parametrize(
    ("list_name", "category", "notice"),
    [
        ("ctiru", "terrorism", CTIRU_NOTICE),
        ("ctiru", "extremism", CTIRU_NOTICE),  # the school named the category otherwise
        ("police_list", "terrorism", CTIRU_NOTICE),  # the source named otherwise
        ("iwf", "child_abuse", IWF_NOTICE),
        ("local_illegal", "other", None),
    ],
)
def test_the_alert_names_the_list_that_matched(
    list_name: str, category: str, notice: str | None
) -> None:
    """A CTIRU hit says the police's CTIRU list, not the IWF's; never the address."""
    url = "terror-test.example/video/1"
    alert = illegal(list_name, category, url)
    said = str(alert.payload["notice"])
    if notice is None:
        assert said.startswith(f"matched an illegal-content list ({list_name})")
        assert "IWF" not in said
        assert "CTIRU" not in said
    else:
        assert said == notice
    assert f"What:      {said}" in alert.text
    if notice is CTIRU_NOTICE:
        assert "IWF" not in alert.text
    for text in (alert.text, str(alert.payload), alert.subject):
        assert "terror-test" not in text
