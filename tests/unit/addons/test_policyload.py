"""PolicyLoader: an edited policy, content phrases or list source is reloaded on its own."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from addons.policyload import PolicyLoader
from proxy.filterset import load_filterset

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def loader(tmp_path: Path) -> PolicyLoader:
    """A loader over a copy of the shipped config/ and of the demo lists."""
    config, lists = tmp_path / "config", tmp_path / "blocklists" / "demo"
    shutil.copytree(ROOT / "config", config)
    shutil.copytree(ROOT / "blocklists" / "demo", lists)
    # the settings' ../var and ../blocklists/demo now resolve inside tmp_path
    return PolicyLoader(config, load_filterset(config))


def check(loader: PolicyLoader) -> None:
    asyncio.run(loader.check_for_changes())


def test_nothing_changed_reloads_nothing(loader: PolicyLoader) -> None:
    """A look with no file edited keeps the filterset in force."""
    before = loader.filterset
    check(loader)
    assert loader.filterset is before
    assert (loader.reloads, loader.failures) == (0, 0)


def test_an_edited_content_phrases_file_reloads_the_policy(loader: PolicyLoader) -> None:
    """content-phrases.yaml is part of the policy: editing it alone puts new phrases in force."""
    phrases = loader.config_dir / "content-phrases.yaml"
    phrases.write_text(
        phrases.read_text("utf-8").replace(
            "        porn: 15\n", "        porn: 15\n        zyzzyva: 90\n"
        ),
        "utf-8",
    )
    scorer = loader.filterset.policy.content
    assert scorer is not None
    assert scorer.score("zyzzyva").by_category.get("adult", 0) == 0
    check(loader)
    assert loader.reloads == 1
    scorer = loader.filterset.policy.content
    assert scorer is not None
    assert scorer.score("zyzzyva").by_category["adult"] >= 90


def test_a_bad_policy_edit_does_not_hold_back_new_lists(loader: PolicyLoader) -> None:
    """Policy and lists changed together: the broken policy is refused, the new lists apply."""
    policy = loader.config_dir / "policy.yaml"
    good = loader.filterset.policy
    policy.write_text(
        policy.read_text("utf-8").replace("default_group: guest", "default_group: nobody"), "utf-8"
    )
    domains = loader.config_dir.parent / "blocklists" / "demo" / "ut1" / "gambling" / "domains"
    with domains.open("a", encoding="utf-8") as f:
        f.write("newly-listed.example\n")
    check(loader)
    assert loader.failures == 1
    assert loader.reloads == 1
    assert loader.filterset.policy is good
    assert any(hit.list == "ut1/gambling" for hit in loader.filterset.matcher.match(
        "newly-listed.example", None
    ))  # fmt: skip
    check(loader)  # a refused edit is not retried (nor logged again) until the file changes
    assert loader.failures == 1
    assert loader.filterset.policy is good
