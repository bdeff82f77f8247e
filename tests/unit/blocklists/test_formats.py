"""List formats: UT1 trees and archives, plain, hosts and IWF lists, bad lines."""

from __future__ import annotations

import itertools
import os
import tarfile
from pathlib import Path

import pytest

from blocklists.compiled import CompiledBuilder, CompiledIndex
from blocklists.formats import ListError, canonical_entry, read_source
from blocklists.index import Hit, IndexBuilder, hash_entry, hashed_hit_entry
from blocklists.normalise import normalise_entry
from tests.shared import shared


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def ut1_tree(tmp_path: Path) -> Path:
    root = tmp_path / "ut1"
    write(
        root / "adult" / "domains",
        "# comment\n\nadult.example\nwww.adult.example\nADULT.example\n10.1.2.3\nbücher.example\n",
    )
    write(root / "adult" / "urls", "www.site.example/adult/\nother.example/x\n")
    write(root / "adult" / "expressions", "(sex|porn)\n")
    write(root / "games" / "domains", "games.example\n")
    (root / "porn").symlink_to("adult")
    write(root / "drugs", "games\n")  # a symlink checked out as a file naming its target
    return root


def test_ut1_tree_names_each_category_folder_as_a_list(ut1_tree: Path) -> None:
    """Every category folder becomes SOURCE/CATEGORY; comments, blanks and case duplicates go."""
    builder = IndexBuilder()
    report = read_source("ut1", ut1_tree, "ut1", builder)
    index = builder.freeze()
    assert index.counts()["ut1/adult"] == 6  # ADULT.example is adult.example
    assert index.counts()["ut1/games"] == 1
    assert report.bad_count == 0
    assert Hit("ut1/adult", "adult.example") in index.match("a.adult.example")


def test_ut1_symlinked_categories_are_read_once_and_named_by_both_names(ut1_tree: Path) -> None:
    """porn -> adult (a symlink) and drugs -> games (a file naming it) hit under both names."""
    builder = CompiledBuilder()
    report = read_source("ut1", ut1_tree, "ut1", builder)
    assert report.aliases == {"ut1/porn": "ut1/adult", "ut1/drugs": "ut1/games"}
    path = ut1_tree.parent / "i.idx"
    builder.write(path)
    index = CompiledIndex.open(path)
    assert index.counts()["ut1/porn"] == index.counts()["ut1/adult"]
    assert {h.list for h in index.match("x.adult.example")} == {"ut1/adult", "ut1/porn"}
    assert {h.list for h in index.match("games.example")} == {"ut1/games", "ut1/drugs"}
    assert report.total == 8  # lines read; the aliases' entries are not counted twice


def test_ut1_keeps_ipv4_and_turns_idn_into_punycode(ut1_tree: Path) -> None:
    """IPv4 literals stay dotted-decimal entries; IDN entries are stored as punycode."""
    builder = IndexBuilder()
    read_source("ut1", ut1_tree, "ut1", builder)
    index = builder.freeze()
    assert index.match("10.1.2.3")
    assert index.match("xn--bcher-kva.example")


def test_ut1_urls_drop_www_so_every_subdomain_matches(ut1_tree: Path) -> None:
    """A ``www.`` url entry also matches the bare host, as squidGuard does."""
    builder = IndexBuilder()
    read_source("ut1", ut1_tree, "ut1", builder)
    index = builder.freeze()
    assert Hit("ut1/adult", "site.example/adult/") in index.match("site.example", "/adult/page")
    assert index.match("site.example", "/adults") == ()
    assert index.has_paths("www.site.example")


def test_ut1_archive_reads_like_the_tree(ut1_tree: Path, tmp_path: Path) -> None:
    """A blacklists.tar.gz (with a symlinked folder) gives the same lists as the folder."""
    archive = tmp_path / "blacklists.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(ut1_tree, arcname="blacklists")
    from_tree, from_tar = IndexBuilder(), IndexBuilder()
    read_source("ut1", ut1_tree, "ut1", from_tree)
    report = read_source("ut1", archive, "ut1", from_tar)
    assert report.aliases["ut1/porn"] == "ut1/adult"
    assert from_tar.freeze().counts()["ut1/adult"] == from_tree.freeze().counts()["ut1/adult"]


def test_truncated_archive_is_rejected(ut1_tree: Path, tmp_path: Path) -> None:
    """A tar.gz cut short raises ListError instead of loading half the lists."""
    archive = tmp_path / "blacklists.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(ut1_tree, arcname="blacklists")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ListError, match="truncated"):
        read_source("ut1", archive, "ut1", IndexBuilder())


def test_bad_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    """Each bad line is named FILE:LINE; the good lines still load."""
    lst = write(tmp_path / "list.txt", "good.example\nbad host.example\n\n[::1\ngood2.example\n")
    builder = IndexBuilder()
    report = read_source("plain", lst, "local", builder)
    assert report.bad_count == 2
    assert report.bad_lines[0].startswith(f"{lst}:2: ")
    assert report.bad_lines[1].startswith(f"{lst}:4: ")
    assert builder.freeze().counts()["local"] == 2


def test_a_source_over_the_bad_line_bound_is_rejected_whole(tmp_path: Path) -> None:
    """More bad lines than max_bad rejects the source, naming where it gave up."""
    lst = write(tmp_path / "list.txt", "a b\nc d\ne f\nok.example\n")
    with pytest.raises(ListError, match=r"list\.txt:3: more than 2 bad lines"):
        read_source("plain", lst, "local", IndexBuilder(), max_bad=2)


def test_hosts_files_take_every_name_after_the_address(tmp_path: Path) -> None:
    """``0.0.0.0 a b # c`` lists a and b; localhost lines are skipped."""
    lst = write(
        tmp_path / "hosts",
        "# title\n127.0.0.1 localhost\n0.0.0.0 a.example b.example # note\n0.0.0.0 C.Example\n",
    )
    builder = IndexBuilder()
    report = read_source("hosts", lst, "bp", builder)
    assert report.bad_count == 0
    assert builder.freeze().counts()["bp"] == 3


def test_iwf_lists_are_stored_hashed_and_match_by_hashing_candidates(tmp_path: Path) -> None:
    """Plain and hashed IWF lines match the same URLs, and the index never holds the URL."""
    hashed = hash_entry("hidden.example/dir/img.jpg")
    lst = write(tmp_path / "iwf.txt", f"http://plain.example/a/b\n{hashed.hex().upper()}\n")
    builder = CompiledBuilder()
    read_source("iwf", lst, "iwf", builder)
    path = tmp_path / "i.idx"
    builder.write(path)
    assert b"plain.example" not in path.read_bytes()
    index = CompiledIndex.open(path)
    assert index.match("plain.example", "/a/b/c") == (
        Hit("iwf", hashed_hit_entry(hash_entry("plain.example/a/b"))),
    )
    assert index.match("www.plain.example", "/a/b?x=1")
    assert index.match("plain.example", "/a/bc") == ()
    assert index.match("hidden.example", "/dir/img.jpg") == (Hit("iwf", hashed_hit_entry(hashed)),)
    assert index.match("hidden.example", "/dir") == ()


def test_iwf_bad_lines_do_not_quote_the_url(tmp_path: Path) -> None:
    """A bad IWF line is reported by place only, never by content."""
    lst = write(tmp_path / "iwf.txt", "http://[bad-secret-url\n")
    report = read_source("iwf", lst, "iwf", IndexBuilder())
    assert report.bad_count == 1
    assert "secret" not in report.bad_lines[0]


def test_unknown_format_is_an_error(tmp_path: Path) -> None:
    """A format other than ut1, plain, hosts or iwf is refused by name."""
    with pytest.raises(ListError, match="unknown format 'csv'"):
        read_source("csv", write(tmp_path / "x", "a\n"), "x", IndexBuilder())


@pytest.mark.shared_data
def test_the_canonical_shortcut_agrees_with_normalise_entry_on_the_sample() -> None:
    """Lines that skip the normaliser are exactly what normalise_entry would return."""
    checked = 0
    for domains in sorted(shared("blocklists-sample", "blacklists").glob("*/domains")):
        with domains.open(encoding="utf-8") as f:
            for raw in itertools.islice(f, 0, None, 25):
                line = raw.strip()
                if line and not line.startswith("#"):
                    assert canonical_entry(line) == normalise_entry(line), line
                    checked += 1
    assert checked > 20_000


@pytest.mark.shared_data
def test_sample_loads_with_no_bad_lines() -> None:
    """The real UT1 sample (IPv4, IDN, www. duplicates, symlinks) reads cleanly."""
    report = read_source("ut1", shared("blocklists-sample", "blacklists"), "ut1", CompiledBuilder())
    assert report.bad_count == 0, report.bad_lines
    assert report.aliases["ut1/porn"] == "ut1/adult"
    assert report.total > 650_000


@pytest.mark.shared_data
def test_sample_hosts_files_load() -> None:
    """The Block List Project hosts files parse with no bad lines."""
    folder = shared("blocklists-sample", "extra-formats", "blocklistproject-hosts")
    for path in sorted(folder.glob("*.txt")):
        report = read_source("hosts", path, path.stem, IndexBuilder())
        assert report.bad_count == 0, report.bad_lines
        assert report.total > 100


def test_readers_do_not_follow_links_out_of_the_tree(tmp_path: Path) -> None:
    """A symlink to a folder outside the source is not an alias (and is not read)."""
    root = tmp_path / "ut1"
    write(root / "a" / "domains", "a.example\n")
    write(tmp_path / "outside" / "domains", "outside.example\n")
    os.symlink(tmp_path / "outside", root / "b")
    builder = IndexBuilder()
    report = read_source("ut1", root, "ut1", builder)
    assert report.aliases == {}
    assert not builder.freeze().match("outside.example")


def test_io_errors_name_the_file(tmp_path: Path) -> None:
    """A missing plain list is a one-line ListError naming the path."""
    with pytest.raises(ListError, match="not found"):
        read_source("plain", tmp_path / "missing.txt", "x", IndexBuilder())


@pytest.mark.parametrize(
    ("path", "matched"),
    [
        ("/dir/page", True),
        ("/dir/page.html", True),
        ("/dir/page.php?id=1", True),
        ("/dir/page/more", True),
        ("/dir/page?q=1", True),
        ("/dir/pages", False),
        ("/dir/page2", False),
        ("/dir/page-two", False),
        ("/dir/pag", False),
    ],
)
def test_ut1_url_entry_without_slash_covers_the_page_with_an_extension(
    tmp_path: Path, path: str, matched: bool
) -> None:
    """A UT1 url entry .../dir/page covers page.html (squidGuard's prefix), not pages or page2."""
    (tmp_path / "ut1" / "phish").mkdir(parents=True)
    (tmp_path / "ut1" / "phish" / "urls").write_text("example.com/dir/page\n", encoding="utf-8")
    memory, compiled = IndexBuilder(), CompiledBuilder()
    read_source("ut1", tmp_path / "ut1", "ut1", memory)
    read_source("ut1", tmp_path / "ut1", "ut1", compiled)
    compiled.write(tmp_path / "lists.idx")
    index = CompiledIndex.open(tmp_path / "lists.idx")
    for matcher in (memory.freeze(), index):
        hits = matcher.match("www.example.com", path)
        assert bool(hits) is matched, (type(matcher).__name__, path)
