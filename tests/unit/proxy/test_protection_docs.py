"""The protection fields are documented where technicians read them, and the demo uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.downloads import KINDS
from proxy.policy import GroupRule, NoDecrypt, PolicyFile, load_policy

ROOT = Path(__file__).resolve().parents[3]
POLICY = ROOT / "config" / "policy.yaml"
PROTECTIONS = ["safe_search", "downloads", "intercept", "allowed_ports", "https_without_sni", "doh"]


@pytest.mark.parametrize("field", PROTECTIONS)
def test_each_group_protection_is_explained_in_the_demo_policy(field: str) -> None:
    """config/policy.yaml's comments name every protection field a group can set."""
    assert field in GroupRule.model_fields
    comments = "\n".join(
        line for line in POLICY.read_text(encoding="utf-8").splitlines() if "#" in line
    )
    assert f"{field}:" in comments


def test_no_decrypt_and_download_kinds_are_explained() -> None:
    """The no_decrypt section and every download kind appear in the demo policy's comments."""
    text = POLICY.read_text(encoding="utf-8")
    assert "no_decrypt" in PolicyFile.model_fields
    assert set(NoDecrypt.model_fields) == {"categories", "hosts"}
    assert "no_decrypt:" in text
    for kind in KINDS:
        assert kind in text


def test_the_demo_policy_turns_the_protections_on() -> None:
    """Pupils get strict safe search, blocked programs and DoH checks; the head gets none."""
    policy = load_policy(POLICY)
    pupil, head = policy.groups["pupil"], policy.groups["head"]
    assert pupil.safe_search == "strict"
    assert "executable" in pupil.downloads.block
    assert pupil.doh == "unacceptable"
    assert head.safe_search == "off"
    assert not policy.groups["byod"].intercept
    assert policy.categories["doh"].incident == "subvert_filtering"
    assert policy.categories["bypass"].incident == "subvert_filtering"
    assert "banking" in policy.no_decrypt_categories
