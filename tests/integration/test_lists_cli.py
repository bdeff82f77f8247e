"""``schoolgate lists``: compile, update from a local HTTP server, lookup and stats."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from proxy.cli.lists import lists
from proxy.lists import build_matcher, index_path, index_stamp
from proxy.settings import load_settings
from tests.integration.harness import (
    PUPIL,
    Gateway,
    OriginCA,
    start_gateway,
    stop_gateway,
    write_config,
)

SECRET = "teacher:s3cret-pass"


@dataclass
class Origin:
    """What the local list server serves, and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    short: set[str] = field(default_factory=set)  # paths whose body is cut short
    auth_seen: list[str | None] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def origin() -> Iterator[Origin]:
    state = Origin()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.auth_seen.append(self.headers.get("Authorization"))
            if self.path.startswith("/private") and self.headers.get("Authorization") != (
                "Basic " + base64.b64encode(SECRET.encode()).decode()
            ):
                self.send_error(401)
                return
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if self.path in state.short else body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def ut1_archive(categories: dict[str, list[str]], alias: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for cat, domains in categories.items():
            data = ("\n".join(domains) + "\n").encode()
            info = tarfile.TarInfo(f"blacklists/{cat}/domains")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (alias or {}).items():
            link = tarfile.TarInfo(f"blacklists/{name}")
            link.type = tarfile.SYMTYPE
            link.linkname = target
            tar.addfile(link)
    return buf.getvalue()


def config(tmp_path: Path, sources: str) -> Path:
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "schoolgate.yaml").write_text(f"data_dir: ../var\nsources:\n{sources}")
    return cfg


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(lists, list(args), env=env)
    return result.exit_code, result.output


def records(tmp_path: Path) -> list[dict[str, object]]:
    log = tmp_path / "var" / "list-updates.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def local_lists(tmp_path: Path) -> Path:
    folder = tmp_path / "lists"
    (folder / "ut1" / "adult").mkdir(parents=True)
    (folder / "ut1" / "adult" / "domains").write_text("adult.example\n")
    (folder / "ut1" / "adult" / "urls").write_text("pages.example/adult\n")
    (folder / "local.txt").write_text("# ours\nblocked.example\n")
    return config(
        tmp_path,
        f"  ut1: {{path: {folder / 'ut1'}, format: ut1}}\n"
        f"  local: {{path: {folder / 'local.txt'}, format: plain}}\n",
    )


def test_every_subcommand_has_help() -> None:
    """compile, update, lookup and stats each explain themselves."""
    for command in ("compile", "update", "lookup", "stats"):
        code, out = run(command, "--help")
        assert code == 0, out
        assert "--config" in out


def test_compile_then_lookup_names_list_and_entry(local_lists: Path) -> None:
    """lookup prints the list and the entry that matched, for any spelling of the URL."""
    code, out = run("compile", "--config", str(local_lists))
    assert code == 0, out
    assert "compiled 3 entries from 2 sources" in out
    code, out = run("lookup", "--config", str(local_lists), "HTTP://WWW.Adult.Example.:80/x")
    assert (code, out) == (0, "ut1/adult\tadult.example\n")
    code, out = run("lookup", "--config", str(local_lists), "http://pages.example/adult/1")
    assert out == "ut1/adult\tpages.example/adult\n"
    code, out = run("lookup", "--config", str(local_lists), "--json", "http://fine.example/")
    assert json.loads(out) == {"url": "fine.example/", "hits": []}


def test_stats_counts_entries_per_list_and_source(local_lists: Path) -> None:
    """stats shows the index size, build time and entries per list and source."""
    code, out = run("stats", "--config", str(local_lists), "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["lists"] == {"local": 1, "ut1/adult": 2}
    assert data["sources"]["ut1"]["entries"] == 2
    assert data["size_bytes"] > 0
    code, out = run("stats", "--config", str(local_lists))
    assert "ut1/adult" in out


def test_errors_are_one_line(tmp_path: Path, local_lists: Path) -> None:
    """A missing config folder or a bad URL is a one-line error and exit status 1."""
    code, out = run("stats", "--config", str(tmp_path / "nope"))
    assert code == 1
    assert out.count("\n") == 1
    code, out = run("lookup", "--config", str(local_lists), "http://[::1")
    assert code == 1
    assert out.startswith("Error: not a URL")


def test_a_bad_list_keeps_the_previous_index(local_lists: Path, tmp_path: Path) -> None:
    """compile fails with FILE:LINE when a source has too many bad lines; the index stays."""
    assert run("compile", "--config", str(local_lists))[0] == 0
    before = (tmp_path / "var" / "lists.idx").read_bytes()
    bad = "\n".join(f"bad entry {i}" for i in range(1001))
    (tmp_path / "lists" / "local.txt").write_text(bad)
    code, out = run("compile", "--config", str(local_lists))
    assert code == 1
    assert "local.txt:1001: more than 1000 bad lines" in out
    assert (tmp_path / "var" / "lists.idx").read_bytes() == before
    settings = load_settings(local_lists)
    assert build_matcher(settings).match("adult.example")  # stale, but the last good one


def test_the_proxy_picks_up_a_new_index_by_its_stamp(local_lists: Path, tmp_path: Path) -> None:
    """After a compile renames a new index into place, the stamp changes and it is reopened."""
    settings = load_settings(local_lists)
    first = build_matcher(settings)
    stamp = index_stamp(settings)
    (tmp_path / "lists" / "local.txt").write_text("blocked.example\nnew.example\n")
    assert index_stamp(settings) != stamp  # a source changed
    assert run("compile", "--config", str(local_lists))[0] == 0
    assert not first.match("new.example")
    assert build_matcher(settings).match("new.example")


def test_build_matcher_compiles_when_missing_or_stale(local_lists: Path, tmp_path: Path) -> None:
    """With no index, the first build_matcher compiles one into data_dir."""
    settings = load_settings(local_lists)
    assert not index_path(settings).exists()
    assert build_matcher(settings).match("x.blocked.example")
    assert index_path(settings).exists()


@pytest.fixture
def remote(tmp_path: Path, origin: Origin) -> Path:
    origin.files["/blacklists.tar.gz"] = ut1_archive(
        {"adult": [f"a{i}.example" for i in range(100)], "games": ["g.example"]},
        {"porn": "adult"},
    )
    origin.files["/private/iwf.txt"] = b"http://hidden.example/img\n"
    return config(
        tmp_path,
        f"  ut1: {{url: '{origin.url('/blacklists.tar.gz')}', format: ut1, max_shrink: 0.5}}\n"
        f"  iwf: {{url: '{origin.url('/private/iwf.txt')}', format: iwf,"
        " credentials_env: IWF_CREDENTIALS}\n",
    )


def test_update_fetches_checks_swaps_and_records(
    remote: Path, origin: Origin, tmp_path: Path
) -> None:
    """update fetches a tar.gz and a members-only list, swaps the index, logs each source."""
    code, out = run(
        "update", "--config", str(remote), "--by", "it.tech", env={"IWF_CREDENTIALS": SECRET}
    )
    assert code == 0, out
    assert SECRET not in out
    assert "s3cret" not in out
    settings = load_settings(remote)
    index = build_matcher(settings)
    assert {h.list for h in index.match("a7.example")} == {"ut1/adult", "ut1/porn"}
    assert index.match("hidden.example", "/img")
    rows = records(tmp_path)
    assert [(r["source"], r["result"], r["before"], r["after"], r["by"]) for r in rows] == [
        ("ut1", "updated", None, 101, "it.tech"),
        ("iwf", "updated", None, 1, "it.tech"),
    ]
    assert "s3cret" not in (tmp_path / "var" / "list-updates.jsonl").read_text()


def test_update_without_credentials_fails_and_says_which_variable(
    remote: Path, tmp_path: Path
) -> None:
    """A members-only source with its variable unset fails by name; nothing is swapped."""
    code, out = run("update", "--config", str(remote), "iwf", env={"IWF_CREDENTIALS": ""})
    assert code == 1
    assert "IWF_CREDENTIALS is not set" in out
    assert records(tmp_path)[0]["result"] == "failed"


def test_a_shrunken_list_is_refused_unless_forced(
    remote: Path, origin: Origin, tmp_path: Path
) -> None:
    """A copy with more than max_shrink fewer entries is refused; --force accepts it."""
    env = {"IWF_CREDENTIALS": SECRET}
    assert run("update", "--config", str(remote), env=env)[0] == 0
    origin.files["/blacklists.tar.gz"] = ut1_archive({"adult": ["only.example"]})
    code, out = run("update", "--config", str(remote), "ut1", env=env)
    assert code == 1
    assert "down from 101" in out
    assert "--force" in out
    settings = load_settings(remote)
    assert build_matcher(settings).match("a7.example")  # the previous index stays
    code, out = run("update", "--config", str(remote), "ut1", "--force", env=env)
    assert code == 0, out
    index = build_matcher(settings)
    assert not index.match("a7.example")
    assert index.match("only.example")
    results = [(r["result"], r["forced"]) for r in records(tmp_path) if r["source"] == "ut1"]
    assert results == [("updated", False), ("refused", False), ("updated", True)]


def test_a_truncated_download_is_refused(remote: Path, origin: Origin, tmp_path: Path) -> None:
    """A body shorter than its Content-Length is refused and the previous index stays."""
    env = {"IWF_CREDENTIALS": SECRET}
    assert run("update", "--config", str(remote), env=env)[0] == 0
    stamp = index_stamp(load_settings(remote))
    origin.short.add("/blacklists.tar.gz")
    code, out = run("update", "--config", str(remote), "ut1", env=env)
    assert code == 1
    assert "ut1: failed" in out
    assert index_stamp(load_settings(remote)) == stamp
    assert not list((tmp_path / "var" / "sources").glob(".*"))  # no leftovers


def test_an_unparseable_download_is_refused(remote: Path, origin: Origin) -> None:
    """A file that is not a tar archive at all fails to parse and is refused."""
    origin.files["/blacklists.tar.gz"] = b"<html>maintenance</html>"
    code, out = run("update", "--config", str(remote), "ut1")
    assert code == 1
    assert "ut1: failed" in out


# -- per-category checks -------------------------------------------------------------------

DEMO_UT1 = {
    # 1026 + 487 + 487 = 2000 entries; without adult and the others doubled: 1948 (-2.6%)
    "adult": ["adult-demo.example", *(f"adult{i}.example" for i in range(1025))],
    "gambling": ["casino-demo.example", *(f"bet{i}.example" for i in range(486))],
    "games": [f"game{i}.example" for i in range(487)],
}
NO_ADULT = {
    "gambling": [f"bet{i}.example" for i in range(974)],
    "games": [f"game{i}.example" for i in range(974)],
}


@pytest.fixture
def proxied(tmp_path: Path, origin: Origin, origin_ca: OriginCA) -> Iterator[Gateway]:
    """The real proxy reading ut1 from the list server; its first copy fetched by update."""
    origin.files["/blacklists.tar.gz"] = ut1_archive(DEMO_UT1)
    cfg = tmp_path / "config"
    write_config(cfg, tmp_path / "var", 1)
    settings = cfg / "schoolgate.yaml"
    text = settings.read_text().splitlines()
    text = [
        f"  ut1: {{url: '{origin.url('/blacklists.tar.gz')}', format: ut1}}"
        if line.startswith("  ut1:")
        else line
        for line in text
    ]
    settings.write_text("\n".join(text) + "\n")
    code, out = run("update", "--config", str(cfg), "--by", "it.tech")
    assert code == 0, out
    gw = start_gateway(tmp_path, origin_ca)
    yield gw
    stop_gateway(gw)


def test_an_update_without_adult_is_refused_and_adult_stays_blocked(
    proxied: Gateway, origin: Origin, tmp_path: Path
) -> None:
    """UT1 without adult/, the rest doubled (total -2.6%): refused by name, index kept, blocked."""
    gw = proxied
    assert gw.get("http://adult-demo.example/", client=PUPIL)[0] == 403
    index = gw.data_dir / "lists.idx"
    kept = index.read_bytes()
    origin.files["/blacklists.tar.gz"] = ut1_archive(NO_ADULT)
    code, out = run("update", "--config", str(gw.config_dir), "--by", "it.tech")
    assert code == 1
    assert "ut1: refused (2000 -> 1948 entries)" in out
    assert "\n  ut1/adult: gone (was 1026 entries)\n" in out
    assert "--force" in out
    assert index.read_bytes() == kept
    time.sleep(0.5)  # more than two reload checks (200 ms) of the running proxy
    assert gw.get("http://adult-demo.example/", client=PUPIL)[0] == 403
    assert gw.get("http://casino-demo.example/", client=PUPIL)[0] == 403
    assert gw.process.poll() is None
    row = records(tmp_path)[-1]
    assert (row["result"], row["forced"], row["problems"]) == (
        "refused",
        False,
        ["ut1/adult: gone (was 1026 entries)"],
    )
    assert row["lists"] == {
        "ut1/adult": [1026, None],
        "ut1/gambling": [487, 974],
        "ut1/games": [487, 974],
    }


def test_forcing_it_is_recorded_with_the_counts_per_list(
    proxied: Gateway, origin: Origin, tmp_path: Path
) -> None:
    """--force installs the copy and the change log row says forced, with each list's counts."""
    origin.files["/blacklists.tar.gz"] = ut1_archive(NO_ADULT)
    code, out = run("update", "--config", str(proxied.config_dir), "--by", "it.tech", "--force")
    assert code == 0, out
    assert "ut1/adult: gone (was 1026 entries)" in out
    row = records(tmp_path)[-1]
    assert (row["result"], row["forced"], row["by"]) == ("updated", True, "it.tech")
    counts = row["lists"]
    assert isinstance(counts, dict)
    assert counts["ut1/adult"] == [1026, None]
    assert counts["ut1/games"] == [487, 974]


@pytest.fixture
def illegal_remote(tmp_path: Path, origin: Origin) -> Path:
    origin.files["/iwf.txt"] = b"".join(b"http://hidden%d.example/img\n" % i for i in range(10))
    return config(
        tmp_path,
        f"  iwf: {{url: '{origin.url('/iwf.txt')}', format: iwf, illegal: true,"
        " max_shrink: 1.0}\n",
    )


def test_an_illegal_source_never_shrinks_even_forced(
    illegal_remote: Path, origin: Origin, tmp_path: Path
) -> None:
    """One entry fewer in a source marked illegal is refused, --force or not; it may grow."""
    assert run("update", "--config", str(illegal_remote))[0] == 0
    origin.files["/iwf.txt"] = b"".join(b"http://hidden%d.example/img\n" % i for i in range(9))
    for extra in ([], ["--force"]):
        code, out = run("update", "--config", str(illegal_remote), *extra)
        assert code == 1
        assert "iwf: refused (10 -> 9 entries)" in out
        assert "illegal source may not shrink, even with --force" in out
    assert build_matcher(load_settings(illegal_remote)).match("hidden9.example", "/img")
    origin.files["/iwf.txt"] += b"http://hidden10.example/img\nhttp://hidden11.example/img\n"
    assert run("update", "--config", str(illegal_remote))[0] == 0
    assert [r["result"] for r in records(tmp_path)] == ["updated", "refused", "refused", "updated"]
