"""Alerts: telling people about incidents, by webhook and e-mail, off the request path.

An illegal hit alerts at once; everything else waits for the digest. The
``Alerter`` owns a thread and a queue: ``send`` only enqueues, so a mail
server or webhook that is down never slows or blocks the proxy. A failed
delivery is retried with a growing delay (1 s, 2 s, 4 s … at most 5
minutes between tries) up to ``max_attempts``, and every outcome is logged.
No alert ever carries the URL of an illegal hit.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from proxy.incidents.events import IncidentEvent, illegal_notice
from proxy.settings import Alerts, Smtp

log = logging.getLogger("schoolgate.alerts")
TIMEOUT_S = 10.0
MAX_DELAY_S = 300.0


@dataclass(frozen=True)
class Alert:
    kind: str  # "illegal" or "digest"
    subject: str
    text: str
    payload: dict[str, Any]


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    def deliver(self, alert: Alert) -> None:
        """Deliver or raise."""


@dataclass(frozen=True)
class Webhook:
    url: str
    name: str = "webhook"

    def deliver(self, alert: Alert) -> None:
        body = json.dumps(
            {"kind": alert.kind, "subject": alert.subject, "text": alert.text, **alert.payload},
            ensure_ascii=False,
        ).encode("utf-8")
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "schoolgate-alerts"},
        )
        # A direct connection: alerts must not depend on an HTTP proxy setting.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=TIMEOUT_S) as response:
            status = int(response.status)
        if not 200 <= status < 300:
            raise OSError(f"webhook answered {status}")


@dataclass(frozen=True)
class Email:
    smtp: Smtp
    recipients: tuple[str, ...]
    name: str = "email"

    def deliver(self, alert: Alert) -> None:
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = alert.subject
        message.set_content(alert.text)
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=TIMEOUT_S) as client:
            if self.smtp.starttls:
                client.starttls()
            if self.smtp.username:
                password = os.environ.get(self.smtp.password_env or "", "")
                client.login(self.smtp.username, password)
            client.send_message(message)


def illegal_channels(alerts: Alerts) -> list[Channel]:
    channels: list[Channel] = []
    if alerts.illegal.webhook:
        channels.append(Webhook(alerts.illegal.webhook))
    if alerts.illegal.email:
        channels.append(Email(alerts.smtp, tuple(alerts.illegal.email)))
    return channels


def digest_channels(alerts: Alerts) -> list[Channel]:
    channels: list[Channel] = []
    if alerts.digest.webhook:
        channels.append(Webhook(alerts.digest.webhook))
    if alerts.digest.email:
        channels.append(Email(alerts.smtp, tuple(alerts.digest.email)))
    return channels


def illegal_alert(event: IncidentEvent, school: str) -> Alert:
    """The at-once alert for an illegal hit: who, when, where from; never the URL."""
    who = event.user or "an unnamed user"
    notice = illegal_notice(event.list_name, event.category)
    lines = [
        f"{school}: an attempt to reach illegal content was blocked.",
        "",
        f"When:      {event.at.isoformat(timespec='seconds')}",
        f"Who:       {who} (group {event.group})",
        f"Address:   {event.client_ip or '-'}",
        f"Device:    {event.device or '-'}",
        f"Category:  {event.category}",
        f"What:      {notice}",
        f"Reference: {event.reference or '-'}",
        "",
        "Do not try to visit or check the address. Follow the illegal incidents",
        "procedure of the online safety policy: isolate the device, tell the",
        "Designated Safeguarding Lead, and report to the police.",
        "Record the review with `schoolgate incidents review`.",
    ]
    return Alert(
        kind="illegal",
        subject=f"[Schoolgate] Illegal content incident — {school}",
        text="\n".join(lines),
        payload={
            "at": event.at.isoformat(),
            "user": event.user,
            "group": event.group,
            "client_ip": event.client_ip,
            "device": event.device,
            "category": event.category,
            "notice": notice,
            "reference": event.reference,
        },
    )


def urgent_search_alert(event: IncidentEvent, school: str) -> Alert:
    """The at-once alert for a search about suicide or self-harm: who and when, so the DSL
    can act today; the words searched are in the console, not in an e-mail."""
    who = event.user or "an unnamed user (shared address)"
    about = event.category.replace("_", " ")
    lines = [
        f"{school}: a search about {about} was just made.",
        "",
        f"When:      {event.at.isoformat(timespec='seconds')}",
        f"Who:       {who} (group {event.group})",
        f"Address:   {event.client_ip or '-'}",
        f"Device:    {event.device or '-'}",
        f"Reference: {event.reference or '-'}",
        "",
        "Follow the safeguarding procedure: the Designated Safeguarding Lead should",
        "see the incident, and the searches and pages around it, in the console today.",
    ]
    return Alert(
        kind="concerning_search",
        subject=f"[Schoolgate] Search about {about}: act today — {school}",
        text="\n".join(lines),
        payload={
            "at": event.at.isoformat(),
            "user": event.user,
            "group": event.group,
            "client_ip": event.client_ip,
            "device": event.device,
            "category": event.category,
            "reference": event.reference,
        },
    )


@dataclass(frozen=True)
class Result:
    """One try at delivering an alert by one channel."""

    alert: Alert
    channel: str
    ok: bool
    attempt: int
    final: bool  # sent, or given up
    detail: str | None = None


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    alert: Alert = field(compare=False)
    channel: Channel = field(compare=False)
    attempt: int = field(compare=False, default=0)


class Alerter:
    """A thread that delivers alerts, retrying failures; ``send`` never blocks."""

    def __init__(
        self,
        max_attempts: int = 12,
        base_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_result: Callable[[Result], None] | None = None,
    ) -> None:
        # told of every try (sent, failed and retrying, given up), to store it for the DSL
        self.on_result = on_result
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self._clock = clock
        self._jobs: list[_Job] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.delivered: list[tuple[str, str]] = []  # (kind, channel), for the log and tests
        self.failed: list[tuple[str, str, str]] = []  # gave up: (kind, channel, last error)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="schoolgate-alerts", daemon=True)
            self._thread.start()

    def send(self, alert: Alert, channels: Sequence[Channel]) -> None:
        with self._cond:
            for channel in channels:
                self._seq += 1
                self._jobs.append(_Job(self._clock(), self._seq, alert, channel))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._jobs)

    def stop(self, timeout: float = 5.0) -> None:
        """Try what is due once more (up to ``timeout``), then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _next(self) -> _Job | None:
        with self._cond:
            while True:
                now = self._clock()
                due = [j for j in self._jobs if j.due <= now]
                if due:
                    job = min(due)
                    self._jobs.remove(job)
                    return job
                if self._stopping:
                    return None
                wait = min((j.due for j in self._jobs), default=now + 60) - now
                self._cond.wait(timeout=max(0.01, min(wait, 60)))

    def _run(self) -> None:
        while (job := self._next()) is not None:
            job.attempt += 1
            try:
                job.channel.deliver(job.alert)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if job.attempt >= self.max_attempts or self._stopping:
                    log.error(
                        "alert %s by %s failed %d times, giving up: %s",
                        job.alert.kind,
                        job.channel.name,
                        job.attempt,
                        reason,
                    )
                    self.failed.append((job.alert.kind, job.channel.name, reason))
                    self._tell(
                        Result(job.alert, job.channel.name, False, job.attempt, True, reason)
                    )
                    continue
                delay = min(MAX_DELAY_S, self.base_delay * 2 ** (job.attempt - 1))
                log.warning(
                    "alert %s by %s failed (try %d), retrying in %.0f s: %s",
                    job.alert.kind,
                    job.channel.name,
                    job.attempt,
                    delay,
                    reason,
                )
                with self._cond:
                    job.due = self._clock() + delay
                    self._jobs.append(job)
                self._tell(Result(job.alert, job.channel.name, False, job.attempt, False, reason))
                continue
            log.info("alert %s sent by %s", job.alert.kind, job.channel.name)
            self.delivered.append((job.alert.kind, job.channel.name))
            self._tell(Result(job.alert, job.channel.name, True, job.attempt, True))

    def _tell(self, result: Result) -> None:
        if self.on_result is None:
            return
        try:
            self.on_result(result)
        except Exception:  # recording a delivery must never stop alerts being delivered
            log.exception("could not record the delivery of alert %s", result.alert.kind)
