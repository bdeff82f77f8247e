"""Illegal lists are the appliance's: every way a policy could open one is refused with FILE:LINE.

The shipped configuration marks the IWF and CTIRU demo sources ``illegal: true``.
Each test edits the shipped policy the way a technician (or someone else) might
to open an illegal list, and checks what ``check``, ``explain`` and ``policy
apply`` make of it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli import cli
from proxy.filterset import load_filterset
from proxy.policy import load_policy
from proxy.yamlfile import ConfigError

ROOT = Path(__file__).resolve().parents[3]
IWF_URL = "http://iwf-test.example/abuse/test-image.jpg"
CTIRU_URL = "http://terror-demo.example/anything"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of the shipped config/ with source paths pointing at the demo lists."""
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    settings = target / "schoolgate.yaml"
    text = settings.read_text(encoding="utf-8").replace("../blocklists", str(ROOT / "blocklists"))
    settings.write_text(text.replace("data_dir: ../var", f"data_dir: {tmp_path / 'var'}"), "utf-8")
    return target


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def edit(config: Path, old: str, new: str) -> tuple[Path, int]:
    """Replace ``old`` in the policy; return the file and the line the change is on."""
    policy = config / "policy.yaml"
    text = policy.read_text("utf-8")
    assert old in text, old
    at = text.index(old)
    policy.write_text(text.replace(old, new, 1), "utf-8")
    return policy, text.count("\n", 0, at) + 1


def check_errors(config: Path) -> list[str]:
    code, _, err = invoke("check", "--config", str(config))
    assert code == 1, err
    return [line for line in err.splitlines() if ": warning:" not in line]


def test_shipped_config_blocks_both_illegal_demo_lists(config: Path) -> None:
    """The IWF and CTIRU test entries are blocked as illegal, their addresses withheld."""
    for url, category in ((IWF_URL, "child_abuse"), (CTIRU_URL, "terrorism")):
        code, out, err = invoke(
            "explain", url, "--group", "staff", "--json", "--config", str(config)
        )
        assert code == 0, err
        found = json.loads(out)
        assert (found["decision"], found["incident"], found["category"]) == (
            "block",
            "illegal",
            category,
        )
        assert found["url"] is None
        assert "example" not in found["matched"]["entry"]


def test_relabelled_category_is_refused(config: Path) -> None:
    """`illegal: false` on the IWF category is refused at its line."""
    policy, line = edit(
        config, "child_abuse: {lists: [iwf], illegal: true}", "child_abuse: {lists: [iwf]}"
    )
    assert check_errors(config) == [
        f"{policy}:{line}: category 'child_abuse' holds list 'iwf' of illegal source 'iwf': "
        "it must be `illegal: true`, as the settings say; nothing in the policy can weaken an "
        "illegal list"
    ]


def test_relabelled_category_opened_for_a_group_names_both_lines(config: Path) -> None:
    """Relabelled and opened for staff: the label and the group's line are both refused."""
    policy, first = edit(
        config,
        "terrorism:   {lists: [ctiru], illegal: true}",
        "terrorism: {lists: [ctiru], illegal: false}",
    )
    _, second = edit(
        config, "      doh: blocked\n", "      doh: blocked\n      terrorism: acceptable\n"
    )
    errors = check_errors(config)
    assert errors[0].startswith(f"{policy}:{first}: category 'terrorism' holds list 'ctiru'")
    assert errors[1] == (
        f"{policy}:{second + 1}: group 'staff' opens category 'terrorism', which holds an "
        "illegal list: no group can open it"
    )


def test_illegal_list_moved_to_another_category_is_refused(config: Path) -> None:
    """The CTIRU list moved into an ordinary category is refused at that category's line."""
    edit(config, "  terrorism:   {lists: [ctiru], illegal: true}\n", "")
    policy, line = edit(
        config,
        "gambling:    {lists: [ut1/gambling]}",
        "gambling:    {lists: [ut1/gambling, ctiru]}",
    )
    assert check_errors(config) == [
        f"{policy}:{line}: category 'gambling' holds list 'ctiru' of illegal source 'ctiru': "
        "it must be `illegal: true`, as the settings say; nothing in the policy can weaken an "
        "illegal list"
    ]


@pytest.mark.parametrize(
    "action", ["acceptable", "{acceptable_at: lunchtime}", "{acceptable_for: [j.meer]}"]
)
def test_illegal_category_opened_for_a_group_is_refused(config: Path, action: str) -> None:
    """No group may open an illegal category, at any time or for anyone."""
    policy, line = edit(
        config, "      doh: blocked\n", f"      doh: blocked\n      child_abuse: {action}\n"
    )
    assert check_errors(config) == [
        f"{policy}:{line + 1}: category 'child_abuse' is illegal: no group can open it "
        "(it is blocked for everyone)"
    ]


@pytest.mark.parametrize(
    "entry",
    ["terror-demo.example", "iwf-test.example/abuse/test-image.jpg", "illegal-demo.example"],
)
def test_local_allow_entry_on_an_illegal_list_is_refused(config: Path, entry: str) -> None:
    """An allow entry on an illegal list is refused at its line, without repeating it."""
    policy, line = edit(
        config,
        "  allow: [www.bbc.co.uk/bitesize]",
        f"  allow:\n    - www.bbc.co.uk/bitesize\n    - {entry}",
    )
    errors = check_errors(config)
    assert len(errors) == 1
    assert errors[0].startswith(f"{policy}:{line + 2}: local allow entry matches illegal list")
    assert entry.split("/", maxsplit=1)[0] not in errors[0]


def test_illegal_category_cannot_pass_undecrypted(config: Path) -> None:
    """An illegal category in no_decrypt (where only hosts are seen) is refused."""
    policy, line = edit(config, "categories: [banking]", "categories: [banking, child_abuse]")
    assert check_errors(config) == [
        f"{policy}:{line}: category 'child_abuse' is illegal: it cannot be passed through "
        "undecrypted, where only its hosts could be checked"
    ]


def test_dropped_categories_still_block_and_check_says_where(config: Path) -> None:
    """A policy that leaves the illegal lists out gets them back: check warns, explain blocks."""
    edit(config, "  child_abuse: {lists: [iwf], illegal: true}\n", "")
    policy, _ = edit(config, "  terrorism:   {lists: [ctiru], illegal: true}\n", "")
    line = policy.read_text("utf-8").splitlines().index("categories:") + 1
    code, out, err = invoke("check", "--config", str(config))
    assert code == 0, err
    assert (
        f"{policy}:{line}: warning: list 'iwf' of illegal source 'iwf' is in no category of the "
        "policy: it is blocked for everyone as illegal category 'child_abuse'"
    ) in err.splitlines()
    assert "as illegal category 'terrorism'" in err
    for url in (IWF_URL, CTIRU_URL):
        code, out, err = invoke(
            "explain", url, "--user", "head.teacher", "--json", "--config", str(config)
        )
        assert code == 0, err
        assert json.loads(out)["incident"] == "illegal"


def test_iwf_format_is_illegal_without_the_flag(config: Path) -> None:
    """A settings file written before `illegal:` existed still makes the IWF list illegal."""
    settings = config / "schoolgate.yaml"
    settings.write_text(settings.read_text("utf-8").replace(", illegal: true", ""), "utf-8")
    edit(config, "child_abuse: {lists: [iwf], illegal: true}", "child_abuse: {lists: [iwf]}")
    with pytest.raises(ConfigError, match="category 'child_abuse' holds list 'iwf'"):
        load_filterset(config)


def test_a_plain_source_marked_illegal_is_illegal(config: Path) -> None:
    """`illegal: true` on a plain source makes its hosts illegal in a policy that never names it."""
    settings = config / "schoolgate.yaml"
    settings.write_text(
        settings.read_text("utf-8").replace(
            "doh: {path: doh-endpoints.txt, format: plain}",
            "doh: {path: doh-endpoints.txt, format: plain, illegal: true}",
        ),
        "utf-8",
    )
    edit(config, "  doh:         {lists: [doh, ut1/doh], incident: subvert_filtering}\n", "")
    edit(config, "      doh: unacceptable\n  staff:", "  staff:")
    edit(config, "      doh: blocked\n  head:", "  head:")
    _, _, err = invoke("check", "--config", str(config))
    fs = load_filterset(config)
    assert fs.policy.categories["doh"].illegal
    assert "as illegal category 'doh'" in err
    assert all(g.action_for("doh").kind == "unacceptable" for g in fs.policy.groups.values())


# --- policy apply ---------------------------------------------------------------------------


def apply(config: Path, edited: Path, *extra: str) -> tuple[int, str, str]:
    return invoke(
        "policy",
        "apply",
        str(edited),
        "--by",
        "tech",
        "--reason",
        "try",
        *extra,
        "--config",
        str(config),
    )


def edited_copy(config: Path, tmp_path: Path, old: str, new: str) -> Path:
    text = (config / "policy.yaml").read_text("utf-8")
    assert old in text
    edited = config / "edited.yaml"  # beside content-phrases.yaml, which the policy uses
    edited.write_text(text.replace(old, new, 1), "utf-8")
    return edited


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        (
            "child_abuse: {lists: [iwf], illegal: true}",
            "child_abuse: {lists: [iwf], illegal: false}",
            "category 'child_abuse' holds list 'iwf' of illegal source 'iwf'",
        ),
        (
            "  child_abuse: {lists: [iwf], illegal: true}\n",
            "",
            "an illegal list cannot be dropped from the policy",
        ),
        (
            "      doh: blocked\n",
            "      doh: blocked\n      child_abuse: acceptable\n",
            "category 'child_abuse' is illegal: no group can open it",
        ),
    ],
    ids=["relabel", "drop", "open"],
)
def test_dry_run_refuses_and_never_shows_an_illegal_list_opening(
    config: Path, tmp_path: Path, old: str, new: str, why: str
) -> None:
    """--dry-run refuses with FILE:LINE and shows no impact, so never "→ acceptable"."""
    edited = edited_copy(config, tmp_path, old, new)
    code, out, err = apply(config, edited, "--dry-run")
    assert code == 1
    assert re.search(rf"{re.escape(str(edited))}:\d+: .*{re.escape(why)}", err), err
    assert "→" not in out
    assert "impact" not in out


def test_refused_apply_is_recorded_and_installs_nothing(config: Path, tmp_path: Path) -> None:
    """A refused apply leaves the policy alone and appears in the log as policy.refuse."""
    before = (config / "policy.yaml").read_text("utf-8")
    edited = edited_copy(
        config, tmp_path, "  allow: [www.bbc.co.uk/bitesize]", "  allow: [iwf-test.example/abuse]"
    )
    edited.write_text(
        edited.read_text("utf-8").replace("iwf-test.example/abuse", "illegal-demo.example")
    )
    code, _, err = apply(config, edited)
    assert code == 1
    assert "local allow entry matches illegal list 'iwf'" in err
    assert (config / "policy.yaml").read_text("utf-8") == before
    code, out, err = invoke("changes", "list", "--kind", "policy", "--config", str(config))
    assert code == 0, err
    assert "policy.refuse  tech" in out
    assert out.rstrip().endswith("— try")
    assert "illegal-demo" not in out
    code, out, _ = invoke("changes", "verify", "--config", str(config))
    assert code == 0, out


def test_policy_apply_of_a_policy_in_force_without_a_category_is_not_a_drop(
    config: Path, tmp_path: Path
) -> None:
    """A policy that never named the CTIRU list may be edited: only dropping one is refused."""
    policy = config / "policy.yaml"
    policy.write_text(
        policy.read_text("utf-8").replace("  terrorism:   {lists: [ctiru], illegal: true}\n", ""),
        "utf-8",
    )
    edited = edited_copy(config, tmp_path, "gambling: unacceptable", "gambling: blocked")
    code, out, err = apply(config, edited, "--dry-run")
    assert code == 0, err
    assert "category" not in out.split("---")[0]  # no category added or removed in the impact


def test_load_policy_alone_knows_nothing_of_the_settings() -> None:
    """The policy on its own compiles; it is the filterset that puts the illegal lists in."""
    policy = load_policy(ROOT / "config" / "policy.yaml")
    assert policy.appliance_lists == frozenset()


def test_an_illegal_list_the_policy_never_names_cannot_be_overridden(config: Path) -> None:
    """A CTIRU entry is refused for an override even when the policy has no terrorism category."""
    edit(config, "  terrorism:   {lists: [ctiru], illegal: true}\n", "")
    code, _, err = invoke(
        *("override", "request", "terror-demo.example", "--for", "group:staff", "--days", "1"),
        *("--reason", "research", "--by", "j.meer", "--config", str(config)),
    )
    assert code == 1
    assert "that address is on an illegal list: it can never be overridden" in err
    code, _, err = invoke(
        *("override", "request", "--category", "terrorism", "--for", "everyone"),
        *("--reason", "research", "--by", "j.meer", "--config", str(config)),
    )
    assert code == 1
    assert "category 'terrorism' is illegal" in err


def test_renaming_an_illegal_category_is_not_a_drop(config: Path, tmp_path: Path) -> None:
    """The list stays in an illegal category under another name: apply accepts it."""
    edited = edited_copy(
        config,
        tmp_path,
        "child_abuse: {lists: [iwf], illegal: true}",
        "iwf_images: {lists: [iwf], illegal: true}",
    )
    code, out, err = apply(config, edited, "--dry-run")
    assert code == 0, err
    assert "category added: iwf_images" in out
    assert "category removed: child_abuse" in out
