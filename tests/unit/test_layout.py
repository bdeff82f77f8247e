"""The project's own packages are the ones imported, and the rooms stay apart."""

from __future__ import annotations

from pathlib import Path

import addons
import blocklists
import proxy

ROOT = Path(__file__).resolve().parents[2]


def test_generic_package_names_resolve_to_this_repository() -> None:
    """`import proxy` (a generic name) finds this repository's package, not another."""
    for package in (proxy, addons, blocklists):
        assert Path(package.__file__ or "").resolve().parent.parent == ROOT


def test_every_module_says_what_its_room_is_for() -> None:
    """Every module in the three packages opens with a docstring."""
    missing = []
    for folder in ("proxy", "addons", "blocklists"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8").lstrip()
            if not text.startswith(('"""', "'''")):
                missing.append(str(path.relative_to(ROOT)))
    assert missing == []


def test_every_addon_module_is_in_the_independence_contract() -> None:
    """Each addon module (all but the shared facts and pipeline) may import no other addon."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    independent = next(c for c in contracts if c["type"] == "independence")
    modules = {
        f"addons.{path.stem}"
        for path in (ROOT / "addons").glob("*.py")
        if path.stem not in ("__init__", "facts", "pipeline")
    }
    assert set(independent["modules"]) == modules
