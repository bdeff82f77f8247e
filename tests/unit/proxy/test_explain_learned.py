"""`explain` says whether content analysis learned the URL, with its scores and when, and
whether that entry refuses the request for the group (the proxy's own rule)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from proxy.cli import cli
from proxy.content.learned import LEARNED_FILE, LearnedEntry, append
from tests.unit.proxy.test_cli_explain import config, explain

__all__ = ["config"]  # fixture

PAGE = LearnedEntry(
    "unlisted-demo.example/hot",
    "adult",
    140,
    ("free porn", "live sex"),
    "2026-11-30T10:00:00+00:00",
)
IMAGE = LearnedEntry(
    "unlisted-demo.example/pic.jpg", "adult", 87, ("BUTTOCKS_EXPOSED",),
    "2026-11-30T10:05:00+00:00", kind="image", page="http://unlisted-demo.example/gallery",
)  # fmt: skip


def learn(config: Path, *entries: LearnedEntry) -> None:
    data = config.parent / "var"
    data.mkdir(exist_ok=True)
    for entry in entries:
        append(data / LEARNED_FILE, entry)


def learned_of(config: Path, url: str, group: str) -> dict[str, Any]:
    found: dict[str, Any] = explain(config, url, "--group", group)["protections"]["learned"]
    return found


def test_a_url_nobody_learned_says_so(config: Path) -> None:
    """With no learned list at all, explain says the URL is not on it."""
    found = learned_of(config, "http://unlisted-demo.example/hot", "pupil")
    assert found["applies"] is False
    assert found["says"] == "not on the learned list"


def test_a_learned_page_shows_its_scores_and_refuses_pupils_only(config: Path) -> None:
    """Pupils (content analysis, threshold 100) are refused a page that scored 140; staff, with no
    analysis, are not; both see the score, the phrases and when."""
    learn(config, PAGE)
    pupil = learned_of(config, "http://unlisted-demo.example/hot", "pupil")
    assert pupil["applies"] is True
    assert (pupil["state"], pupil["score"], pupil["blocks"]) == ("learned", 140, True)
    assert pupil["phrases"] == ["free porn", "live sex"]
    assert pupil["at"] == PAGE.at
    assert "refused before any upstream connection" in pupil["says"]
    staff = learned_of(config, "http://unlisted-demo.example/hot", "staff")
    assert staff["blocks"] is False
    assert "not refused for group staff" in staff["says"]


def test_a_rejection_is_the_last_word(config: Path) -> None:
    """After the technician rejects the page, explain shows who did, and it refuses nobody."""
    learn(config, PAGE, replace(PAGE, state="rejected", by="tech"))
    found = learned_of(config, "http://unlisted-demo.example/hot", "pupil")
    assert (found["state"], found["by"], found["blocks"]) == ("rejected", "tech", False)
    assert "rejected by tech" in found["says"]


def test_an_image_shows_its_detection_and_page(config: Path) -> None:
    """A learned image shows the detected class, its score in percent and the page that showed
    it; the shipped pupil group does not ask for images, so it is not refused."""
    learn(config, IMAGE)
    found = learned_of(config, "http://unlisted-demo.example/pic.jpg", "pupil")
    assert (found["kind"], found["score"], found["blocks"]) == ("image", 87, False)
    assert found["page"] == "http://unlisted-demo.example/gallery"
    assert "87%" in found["says"]
    assert "BUTTOCKS_EXPOSED" in found["says"]


def test_the_text_output_has_a_learned_line(config: Path) -> None:
    """The terminal output names the learned entry among the protections."""
    learn(config, PAGE)
    result = CliRunner().invoke(
        cli,
        [
            "explain",
            "http://unlisted-demo.example/hot",
            "--group",
            "pupil",
            "--config",
            str(config),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "learned:" in result.output
    assert "scored 140" in result.output
