"""The learned-list page: entries with their scores, and confirm/reject recorded as the person."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from proxy.cli import cli
from proxy.content.learned import LEARNED_FILE, LearnedEntry, LearnedList, append
from tests.console_accounts import add_account, proof
from tests.unit.proxy.console.test_app import app, client, config, csrf, rows

__all__ = ["app", "config"]  # fixtures

PAGE = LearnedEntry(
    "unlisted.example/hot", "adult", 140, ("free porn",), "2026-11-30T10:00:00+00:00"
)
IMAGE = LearnedEntry(
    "unlisted.example/pic.jpg", "adult", 87, ("BUTTOCKS_EXPOSED",), "2026-11-30T10:05:00+00:00",
    kind="image", page="http://unlisted.example/gallery",
)  # fmt: skip


def learned_file(config: Path) -> Path:
    data = config.parent / "var"
    data.mkdir(exist_ok=True)
    return data / LEARNED_FILE


def test_the_page_lists_scores_phrases_and_detections(app: object, config: Path) -> None:
    """A technician sees each entry awaiting a decision: address, category, score, why."""
    append(learned_file(config), PAGE)
    append(learned_file(config), IMAGE)
    add_account(config, "tech", "technician")
    text = client(app, config, "tech").get("/learned").text
    assert "unlisted.example/hot" in text
    assert "adult content" in text
    assert "140" in text
    assert "phrases: free porn" in text
    assert "Image: unlisted.example/pic.jpg" in text
    assert "87%" in text
    assert "detected: BUTTOCKS_EXPOSED" in text
    assert "shown on http://unlisted.example/gallery" in text


def test_reject_and_confirm_are_recorded_as_the_signed_in_person(app: object, config: Path) -> None:
    """Rejecting opens the page (the list's last line says so) and confirming blocks the image;
    each is one change-log row naming the technician and the reason."""
    append(learned_file(config), PAGE)
    append(learned_file(config), IMAGE)
    add_account(config, "tech", "technician")
    c = client(app, config, "tech")
    token = csrf(c, "/learned")
    answer = c.post(
        "/learned/decide",
        data={"csrf": token, "entry": PAGE.entry, "decision": "reject", "reason": "a clinic"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    confirm = {"csrf": token, "entry": IMAGE.entry, "decision": "confirm", "reason": "nudity"}
    c.post("/learned/decide", data=confirm)
    learned = LearnedList(learned_file(config))
    learned.refresh()
    assert (learned.entries[PAGE.entry].state, learned.entries[PAGE.entry].by) == (
        "rejected",
        "tech",
    )
    assert learned.entries[IMAGE.entry].state == "confirmed"
    found = [(r.kind, r.actor, r.reason, json.loads(r.details)["via"]) for r in rows(config)]
    assert found[-2:] == [
        ("content.reject", "tech", "a clinic", "console"),
        ("content.confirm", "tech", "nudity", "console"),
    ]
    assert "Nothing awaits a decision" in c.get("/learned").text


def test_a_decision_needs_a_reason_a_token_and_the_right_role(app: object, config: Path) -> None:
    """No reason: 400; no CSRF token: 403; staff may not open the page; nothing is recorded."""
    append(learned_file(config), PAGE)
    add_account(config, "tech", "technician")
    tech = client(app, config, "tech")
    token = csrf(tech, "/learned")
    data = {"entry": PAGE.entry, "decision": "reject"}
    assert (
        tech.post("/learned/decide", data={**data, "csrf": token, "reason": " "}).status_code == 400
    )
    assert tech.post("/learned/decide", data={**data, "reason": "x"}).status_code == 403
    assert client(app, config, "j.meer").get("/learned").status_code == 403
    assert not [r for r in rows(config) if r.kind.startswith("content.")]
    learned = LearnedList(learned_file(config))
    learned.refresh()
    assert learned.entries[PAGE.entry].state == "learned"


def test_test_a_url_says_what_the_learned_list_holds(app: object, config: Path) -> None:
    """ "Test a URL" shows the learned entry's score and phrases, as explain does."""
    append(learned_file(config), PAGE)
    add_account(config, "tech", "technician")
    text = (
        client(app, config, "tech").get(f"/test?url=http://{PAGE.entry}&as=group&value=pupil").text
    )
    assert "Learned list" in text
    assert "adult content scored 140 (phrases: free porn)" in text


def sg(config: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [*args, "--config", str(config)], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_lists_an_image_with_its_detection_and_page(config: Path) -> None:
    """`content learned` shows an image as an image: the detector's confidence, the class it
    saw and the page that showed it; a text page with its score and phrases."""
    append(learned_file(config), PAGE)
    append(learned_file(config), IMAGE)
    code, out, err = sg(config, "content", "learned")
    assert code == 0, err
    assert out.splitlines() == [
        "2026-11-30T10:00  unlisted.example/hot  adult content, score 140",
        "    phrases: free porn",
        "2026-11-30T10:05  image unlisted.example/pic.jpg  adult content, 87%",
        "    detected: BUTTOCKS_EXPOSED",
        "    shown on http://unlisted.example/gallery",
    ]


def test_the_cli_and_the_console_record_a_decision_alike(app: object, config: Path) -> None:
    """The console rejects the page, the CLI confirms the image: both rows carry the same
    details (one core function writes them), each naming how the person acted."""
    append(learned_file(config), PAGE)
    append(learned_file(config), IMAGE)
    add_account(config, "tech", "technician")
    c = client(app, config, "tech")
    reject = {"csrf": csrf(c, "/learned"), "entry": PAGE.entry, "decision": "reject"}
    assert c.post("/learned/decide", data={**reject, "reason": "a clinic"}).status_code == 200
    code, _, err = sg(
        config, "content", "confirm", "unlisted.example/nothing", "--reason", "x", "--by", "tech"
    )
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "Error: unlisted.example/nothing is not on the learned list "
        "(see `schoolgate content learned --all`)"
    )
    confirm = ("content", "confirm", IMAGE.entry, "--reason", "nudity", "--by", "tech")
    code, out, err = sg(config, *confirm, stdin=proof(config, "tech"))
    assert code == 0, err
    assert out.strip() == f"{IMAGE.entry}: confirmed"
    page, image = (json.loads(r.details) for r in rows(config)[-2:])
    assert {k: page[k] for k in ("entry", "kind", "score", "via")} == {
        "entry": PAGE.entry, "kind": "text", "score": 140, "via": "console",
    }  # fmt: skip
    assert {k: image[k] for k in ("entry", "kind", "page", "phrases", "via")} == {
        "entry": IMAGE.entry, "kind": "image", "page": IMAGE.page,
        "phrases": ["BUTTOCKS_EXPOSED"], "via": "cli",
    }  # fmt: skip
    learned = LearnedList(learned_file(config))
    learned.refresh()
    assert learned.entries[IMAGE.entry].state == "confirmed"
    assert learned.entries[PAGE.entry].state == "rejected"
