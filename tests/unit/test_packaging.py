"""The Dockerfile, its container settings and the systemd unit: parsed and checked.

Docker cannot run here, so these tests read the Dockerfile as Docker would
(continuation lines joined, instructions split) and check what can be checked
without building: every path it copies exists, it runs as a non-root user on
python:3.12-slim with config and data as volumes and a healthcheck, and the
settings it installs load.
"""

from __future__ import annotations

import configparser
import glob
import json
import shlex
from pathlib import Path

import pytest

from proxy.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continuation line"
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(ROOT / "Dockerfile")


def copy_sources(args: str) -> list[str]:
    if args.startswith("["):
        parts: list[str] = json.loads(args)
    else:
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
    return parts[:-1]


def test_every_copied_path_exists(dockerfile: list[tuple[str, str]]) -> None:
    """Each source of COPY and ADD is a file or folder of the repository."""
    copies = [args for word, args in dockerfile if word in ("COPY", "ADD")]
    assert copies
    for args in copies:
        assert "--from" not in args
        for source in copy_sources(args):
            assert glob.glob(str(ROOT / source)), f"COPY {source}: not in the repository"


def test_the_build_context_keeps_what_is_copied() -> None:
    """No copied path is excluded by .dockerignore."""
    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for word, args in instructions(ROOT / "Dockerfile"):
        if word == "COPY":
            for source in copy_sources(args):
                top = source.rstrip("/").split("/")[0]
                assert top not in ignored, f"{source} is in .dockerignore"


def test_base_user_volumes_healthcheck(dockerfile: list[tuple[str, str]]) -> None:
    """python:3.12-slim, a non-root user, config and data volumes, a healthcheck."""
    words = dict(dockerfile)
    assert words["FROM"] == "python:3.12-slim"
    users = [args for word, args in dockerfile if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    volumes = json.loads(words["VOLUME"])
    assert set(volumes) == {"/etc/schoolgate", "/var/lib/schoolgate"}
    assert words["HEALTHCHECK"].startswith("--interval")
    assert json.loads(words["ENTRYPOINT"]) == ["schoolgate"]
    assert json.loads(words["CMD"]) == ["run", "--config", "/etc/schoolgate"]


def test_the_healthcheck_probes_the_ports_the_settings_open(
    dockerfile: list[tuple[str, str]], tmp_path: Path
) -> None:
    """The healthcheck's ports are the container settings' listen and metrics ports."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "schoolgate.yaml").write_text(
        (ROOT / "deploy" / "docker" / "schoolgate.yaml").read_text()
    )
    settings = load_settings(config)
    check = dict(dockerfile)["HEALTHCHECK"]
    assert "8080" in check
    assert settings.listen_port == 8080
    assert settings.metrics_listen is not None
    assert settings.metrics_listen.endswith(":9180")
    assert ":9180/metrics" in check
    assert str(settings.data_dir) == "/var/lib/schoolgate"
    expose = dict(dockerfile)["EXPOSE"].split()
    assert expose == ["8080"]  # metrics stay on the container's loopback, unpublished


def test_container_settings_keep_metrics_on_loopback(tmp_path: Path) -> None:
    """The container's settings file loads with /metrics (no login) on 127.0.0.1, not 0.0.0.0."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "schoolgate.yaml").write_text(
        (ROOT / "deploy" / "docker" / "schoolgate.yaml").read_text()
    )
    settings = load_settings(config)
    assert settings.metrics_listen is not None
    assert settings.metrics_listen.rpartition(":")[0] == "127.0.0.1"


def test_container_lists_are_the_shipped_demo_lists(tmp_path: Path) -> None:
    """The container settings name list paths that the image copies from the repository."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "schoolgate.yaml").write_text(
        (ROOT / "deploy" / "docker" / "schoolgate.yaml").read_text()
    )
    for source in load_settings(config).sources.values():
        assert source.path is not None
        if source.path.is_relative_to("/app"):
            assert (ROOT / source.path.relative_to("/app")).exists(), source.path
        else:  # beside the settings in /etc/schoolgate, which the image fills from config/
            assert source.path.parent == config
            assert (ROOT / "config" / source.path.name).exists(), source.path


def test_systemd_unit_is_hardened() -> None:
    """The unit runs the CLI as its own user with the hardening options set."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read(ROOT / "deploy" / "systemd" / "schoolgate.service")
    service = parser["Service"]
    assert service["ExecStart"].split()[1:] == ["run", "--config", "/etc/schoolgate"]
    assert service["User"] == "schoolgate"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter": "@system-service",
        "StateDirectory": "schoolgate",
    }.items():
        assert service[key] == value, key
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_the_image_configuration_loads(tmp_path: Path) -> None:
    """config/ with the container's settings (as the image lays them out) is a valid filter."""
    import shutil

    from proxy.filterset import load_filterset

    etc = tmp_path / "etc"
    shutil.copytree(ROOT / "config", etc)
    settings = (ROOT / "deploy" / "docker" / "schoolgate.yaml").read_text()
    settings = settings.replace("/app/", f"{ROOT}/").replace(
        "/var/lib/schoolgate", str(tmp_path / "data")
    )
    (etc / "schoolgate.yaml").write_text(settings)
    fs = load_filterset(etc)
    assert fs.policy.groups
    assert set(fs.settings.sources) >= {"ut1", "iwf"}
