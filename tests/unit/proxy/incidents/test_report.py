"""The termly report says what happened in words a governor reads: referred means referred,
an illegal incident not yet closed is shown as open, and no internal code is printed."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, timedelta
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import Engine

from proxy.identity import Identity
from proxy.incidents import report
from proxy.incidents import store as incidents
from proxy.store.engine import session
from tests.unit.proxy.incidents.test_store import FORM, T0, hit

PUPIL_TWO = Identity("p.two", "pupil", "10.10.0.8", "address")
START, END = T0 - timedelta(days=30), T0 + timedelta(days=30)


def summary(page: str) -> dict[str, str]:
    """The summary table's rows: label -> count."""
    table = page.split("<h2>Summary</h2>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", table)
    return {unescape(label): unescape(count) for label, count in rows}


@pytest.fixture
def page(engine: Engine, tmp_path: Path) -> str:
    """Two illegal incidents (one referred to the police and closed, one never reviewed), an
    adult-site incident reviewed with no referral, and one closed with no referral."""
    with session(engine) as s:
        referred, _ = incidents.record_incident(
            s, hit(minutes=0, illegal=True, category="child_abuse")
        )
        still_open, _ = incidents.record_incident(
            s, hit(PUPIL_TWO, minutes=5, illegal=True, category="child_abuse")
        )
        reviewed, _ = incidents.record_incident(s, hit(PUPIL_TWO, minutes=200))
        closed, _ = incidents.record_incident(s, hit(minutes=400, category="social"))
        police = replace(FORM, referred_to=("police",), action_taken="police told")
        incidents.review(s, referred.id, police, T0 + timedelta(hours=1))
        incidents.close(s, referred.id, "a.dsl", "police took the device", T0 + timedelta(hours=2))
        # Action proposed, not taken: a referral written in the text is not one recorded.
        incidents.review(
            s,
            reviewed.id,
            replace(FORM, action_taken="refer to the police?"),
            T0 + timedelta(hours=5),
        )
        incidents.review(s, closed.id, FORM, T0 + timedelta(hours=8))
        incidents.close(s, closed.id, "a.dsl", "warned", T0 + timedelta(hours=9))
        assert still_open.status == "open"
        data = report.gather(s, tmp_path, "School", START, END, UTC, END)
    return report.render_html(data)


def test_referred_counts_only_incidents_recorded_as_referred(page: str) -> None:
    """Two illegal incidents, one referred: the report says 1, not "2 referred"."""
    rows = summary(page)
    key = next(k for k in rows if k.startswith("Incidents referred outside the school"))
    assert rows[key] == "1"
    assert "referred as the policy requires" not in page


def test_an_open_illegal_incident_is_shown_as_open(page: str) -> None:
    """An illegal incident nobody has closed is said to be open, in red, never as resolved."""
    rows = summary(page)
    assert rows["Illegal content (IWF or police list)"] == "2"
    assert rows["… of which still open"] == "1"
    assert '<p class="bad">1 of the 2 illegal-content incidents are still open' in page
    status = page.split("<h2>Where the reviews stand</h2>", 1)[1].split("</table>", 1)[0]
    assert "<td>Waiting for review</td><td>1</td>" in status
    assert "<td>Reviewed, not yet closed</td><td>1</td>" in status
    assert "<td>Closed</td><td>2</td>" in status


def test_the_report_prints_no_internal_code(page: str) -> None:
    """Severity, status, kind and category codes are written as words."""
    text = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    for code in ("deliberate_offensive", "child_abuse", "unacceptable", "concerning", "_"):
        assert code not in text, code
    for cell in ("open", "reviewed", "closed", "illegal", "social"):
        assert f"<td>{cell}</td>" not in page, cell
    assert "Offensive or pornographic" in text
    assert "Against the school&#x27;s rules" in text
    assert "Child abuse" in text


def test_a_referral_must_be_one_the_form_knows(engine: Engine) -> None:
    with session(engine) as s:
        incident, _ = incidents.record_incident(s, hit())
        with pytest.raises(incidents.ReviewError, match="unknown 'the moon'"):
            incidents.review(s, incident.id, replace(FORM, referred_to=("the moon",)), T0)
