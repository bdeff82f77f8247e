"""A school's configuration folder for CLI tests: the demo lists, a private data_dir, a store."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def write_config(tmp_path: Path, store_url: str, policy: str) -> Path:
    """Write ``tmp_path/config`` with settings pointing at the demo lists and ``store_url``."""
    target = tmp_path / "config"
    target.mkdir()
    demo = ROOT / "blocklists" / "demo"
    (target / "schoolgate.yaml").write_text(
        f"data_dir: {tmp_path / 'var'}\n"
        f"database: {store_url}\n"
        "sources:\n"
        f"  ut1: {{path: {demo / 'ut1'}, format: ut1}}\n"
        f"  iwf: {{path: {demo / 'iwf.txt'}, format: iwf}}\n",
        encoding="utf-8",
    )
    (target / "policy.yaml").write_text(policy, encoding="utf-8")
    return target
