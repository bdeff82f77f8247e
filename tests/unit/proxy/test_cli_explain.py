"""`schoolgate explain` shows every rule that matched, which won and why, and the protections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from proxy.cli import cli

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The shipped config/, with adult-demo.example also on the local allow list."""
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    settings = target / "schoolgate.yaml"
    text = settings.read_text(encoding="utf-8").replace("../blocklists", str(ROOT / "blocklists"))
    settings.write_text(text.replace("data_dir: ../var", f"data_dir: {tmp_path / 'var'}"), "utf-8")
    policy = target / "policy.yaml"
    text = policy.read_text("utf-8")
    old = "  allow: [www.bbc.co.uk/bitesize]"
    policy.write_text(text.replace(old, old[:-1] + ", adult-demo.example]"), "utf-8")
    return target


def explain(config: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["explain", *args, "--json", "--config", str(config)])
    assert result.exit_code == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_json_lists_the_winner_and_why_the_category_was_ignored(config: Path) -> None:
    """The local allow entry wins over adult: both are listed, the adult rule says why it lost."""
    out = explain(config, "http://adult-demo.example/", "--group", "pupil")
    assert out["decision"] == "allow"
    rules = {rule["kind"]: rule for rule in out["rules"]}
    assert rules["local_allow"]["won"]
    assert rules["local_allow"]["matched"] == {"list": "local/allow", "entry": "adult-demo.example"}
    adult = rules["category"]
    assert (adult["category"], adult["says"], adult["won"]) == ("adult", "block", False)
    assert adult["why"] == "the school's local allow entries come before the group's rules"
    assert [rule["won"] for rule in out["rules"]].count(True) == 1


def test_json_has_the_protections_of_the_group(config: Path) -> None:
    """A pupil's search on Google shows safe search forced, ports, DoH, downloads and content."""
    out = explain(config, "https://www.google.com/search?q=x", "--group", "pupil")
    protections = out["protections"]
    assert set(protections) >= {"ports", "safe_search", "doh", "downloads", "content"}
    assert protections["safe_search"]["engine"] == "google"
    assert protections["safe_search"]["applies"] is True


def test_an_illegal_hit_shows_no_entry_and_no_protections(config: Path) -> None:
    """explain on an IWF URL withholds every rule's entry and says nothing of protections."""
    out = explain(config, "http://iwf-test.example/abuse/test-image.jpg", "--group", "staff")
    assert out["incident"] == "illegal"
    assert out["protections"] == {}
    text = json.dumps(out)
    assert "iwf-test" not in text
    assert "test-image" not in text


def test_text_marks_the_rule_that_decided(config: Path) -> None:
    """The plain output lists every rule, a star on the one that decided, then the protections."""
    result = CliRunner().invoke(
        cli, ["explain", "http://adult-demo.example/", "--group", "pupil", "--config", str(config)]
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  * local allow entry adult-demo.example  [local/allow: adult-demo.example]" in lines
    assert any(line.startswith("  - group pupil: adult is unacceptable") for line in lines)
    assert "protections (on what the filter lets through):" in lines


@pytest.mark.parametrize(
    ("url", "group", "action"),
    [
        ("https://example.com/", "pupil", "intercept"),
        ("https://example.com/", "byod", "pass"),
        ("https://social-demo.example/", "byod", "refuse"),
        # Safe search without decryption: Google goes to its locked service; Yahoo has none.
        ("https://www.google.com/", "byod", "pass"),
        ("https://search.yahoo.com/", "byod", "refuse"),
        ("http://example.com/", "pupil", None),
    ],
)
def test_tls_says_what_the_proxy_does_with_the_connection(
    config: Path, url: str, group: str, action: str | None
) -> None:
    """A school device is intercepted; BYOD passes undecrypted (a search engine to its locked
    service), or is refused when blocked or when safe search would need decryption; plain
    HTTP has no TLS."""
    tls = explain(config, url, "--group", group)["protections"]["tls"]
    assert tls["action"] == action
    assert tls["applies"] is (action is not None)
