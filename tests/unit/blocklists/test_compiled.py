"""The compiled index: same hits as the reference MemoryIndex, a checked file, swapped whole."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blocklists.compiled import (
    MAGIC,
    SNAPSHOT_MODE,
    VERSION,
    CompiledBuilder,
    CompiledIndex,
    IndexFormatError,
    open_private,
    read_meta,
    verify_file,
)
from blocklists.formats import read_source
from blocklists.index import NO_HITS, Hit, IndexBuilder, MemoryIndex, hash_entry
from blocklists.normalise import BadURL, normalise_url
from tests.shared import shared

ENTRIES = {
    "a/one": ["example.com", "sub.example.org", "10.0.0.1", "tld", "x.example.com/p"],
    "a/two": ["example.com", "example.com/dir/", "example.com/file", "other.net/a/b"],
    "b": ["deep.a.b.c.example.net"],
}

CASES = [
    ("example.com", None),
    ("www.example.com", "/"),
    ("notexample.com", "/"),  # label boundary: no match
    ("example.com.evil", "/"),
    ("a.sub.example.org", "/x"),
    ("example.org", "/"),
    ("10.0.0.1", "/"),
    ("10.0.0.10", "/"),
    ("anything.tld", "/"),
    ("example.com", "/dir/x"),
    ("example.com", "/dir"),  # entry "/dir/" needs the slash
    ("example.com", "/file"),
    ("example.com", "/file.html"),  # the entry /file covers its page with an extension
    ("example.com", "/file?q=1"),
    ("m.example.com", "/file/x"),
    ("x.example.com", "/p"),
    ("x.example.com", None),
    ("other.net", "/a/b/c"),
    ("other.net", "/a/bc"),
    ("deep.a.b.c.example.net", "/"),
    ("a.b.c.example.net", "/"),
    ("", "/"),
    ("com", "/"),
]


def build(entries: dict[str, list[str]]) -> tuple[MemoryIndex, CompiledBuilder]:
    ref, comp = IndexBuilder(), CompiledBuilder()
    for name, items in entries.items():
        for sink in (ref, comp):
            sink.declare(name)
            for item in items:
                sink.add(name, item)
    return ref.freeze(), comp


@pytest.fixture
def pair(tmp_path: Path) -> tuple[MemoryIndex, CompiledIndex]:
    ref, comp = build(ENTRIES)
    comp.write(tmp_path / "lists.idx")
    return ref, CompiledIndex.open(tmp_path / "lists.idx")


@pytest.mark.parametrize(("host", "path"), CASES)
def test_compiled_hits_equal_the_reference(
    pair: tuple[MemoryIndex, CompiledIndex], host: str, path: str | None
) -> None:
    """Every hit for hosts, subdomains, boundaries and path entries; host hits in order."""
    ref, comp = pair
    expected = sorted(ref.match(host, path), key=repr)
    assert sorted(comp.match(host, path), key=repr) == expected
    assert sorted(comp.match(host, path), key=repr) == expected  # again, from the memo
    assert comp.has_paths(host) == ref.has_paths(host)
    assert comp.match(host) == ref.match(host)


def test_a_miss_returns_the_shared_empty_tuple(pair: tuple[MemoryIndex, CompiledIndex]) -> None:
    """A miss allocates no result: it is NO_HITS itself."""
    _, comp = pair
    assert comp.match("nothing.invalid", "/x") is NO_HITS


def test_without_the_memo_answers_are_the_same(tmp_path: Path) -> None:
    """cache_size=0 walks every time and gives the same hits."""
    ref, comp = build(ENTRIES)
    comp.write(tmp_path / "lists.idx")
    index = CompiledIndex.open(tmp_path / "lists.idx", cache_size=0)
    for host, path in CASES:
        assert sorted(index.match(host, path), key=repr) == sorted(ref.match(host, path), key=repr)


def test_the_memo_stays_bounded(tmp_path: Path) -> None:
    """The host memo never holds more than two generations of cache_size hosts."""
    _, comp = build(ENTRIES)
    comp.write(tmp_path / "lists.idx")
    index = CompiledIndex.open(tmp_path / "lists.idx", cache_size=4)
    for i in range(50):
        index.match(f"h{i}.example.com")
    assert len(index._cache) + len(index._old) <= 8
    assert index.match("h1.example.com") == (
        Hit("a/one", "example.com"),
        Hit("a/two", "example.com"),
    )


def test_counts_and_meta(pair: tuple[MemoryIndex, CompiledIndex], tmp_path: Path) -> None:
    """counts() gives entries per list; the header's meta can be read without mapping."""
    ref, comp = pair
    assert dict(comp.counts()) == dict(ref.counts())
    meta = read_meta(tmp_path / "lists.idx")
    assert meta["version"] == VERSION
    assert meta["keys"] == 7  # distinct hosts, path hosts included


def test_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """The index is written to a temporary name and renamed into place."""
    _, comp = build(ENTRIES)
    comp.write(tmp_path / "lists.idx")
    assert [p.name for p in tmp_path.iterdir()] == ["lists.idx"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-10], "truncated"),
        (lambda b: b[:-5] + bytes([b[-5] ^ 1]) + b[-4:], "checksum"),
        (lambda b: b"NOTANIDX" + b[8:], "not a Schoolgate index"),
        (lambda b: MAGIC + (99).to_bytes(4, "little") + b[12:], "version 99"),
        (lambda b: b[:10], "too short"),
    ],
)
def test_a_damaged_file_is_refused(tmp_path: Path, damage, message: str) -> None:
    """Truncation, a flipped bit, a foreign file or a newer version: IndexFormatError."""
    _, comp = build(ENTRIES)
    path = tmp_path / "lists.idx"
    comp.write(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(IndexFormatError, match=message):
        CompiledIndex.open(path)


def test_an_index_in_use_survives_a_swap(tmp_path: Path) -> None:
    """A matcher keeps answering from its mapping after a new file is renamed over it."""
    _, comp = build(ENTRIES)
    path = tmp_path / "lists.idx"
    comp.write(path)
    old = CompiledIndex.open(path)
    _, comp2 = build({"c": ["new.example"]})
    comp2.write(path)
    new = CompiledIndex.open(path)
    assert old.match("example.com")
    assert not new.match("example.com")
    assert new.match("new.example") == (Hit("c", "new.example"),)


def test_hashed_entries_match_like_plain_ones(tmp_path: Path) -> None:
    """A hashed entry hits for the same URLs as the plain entry it hashes."""
    comp = CompiledBuilder()
    comp.declare("iwf")
    for entry in ("bad.example/dir/", "worse.example", "x.example/f"):
        comp.add_hashed("iwf", hash_entry(entry))
    ref = IndexBuilder()
    ref.add_all("plain", ["bad.example/dir/", "worse.example", "x.example/f"])
    comp.write(tmp_path / "i.idx")
    index, plain = CompiledIndex.open(tmp_path / "i.idx"), ref.freeze()
    for host, path in [
        ("bad.example", "/dir/a"),
        ("bad.example", "/dir"),
        ("a.worse.example", "/"),
        ("x.example", "/f?x"),
        ("x.example", "/fx"),
        ("x.example", None),
    ]:
        assert bool(index.match(host, path)) == bool(plain.match(host, path)), (host, path)


def _traffic() -> list[tuple[str, str | None]]:
    urls: list[tuple[str, str | None]] = []
    with shared("traffic", "umbrella-top-100k.txt").open() as f:
        urls.extend((line.strip(), None) for line in f if line.strip())
    with shared("traffic", "iscx-url-2016-benign-urls.txt").open() as f:
        for line in f:
            try:
                url = normalise_url(line.strip())
            except BadURL:
                continue
            urls.append((url.host, url.path))
    return urls


@pytest.mark.shared_data
def test_identical_decisions_to_the_dict_walk_on_all_traffic(tmp_path: Path) -> None:
    """On the sample lists, every URL of ../shared/traffic gets the same hits both ways."""
    ref_builder, comp = IndexBuilder(), CompiledBuilder()
    read_source("ut1", shared("blocklists-sample", "blacklists"), "ut1", ref_builder)
    read_source("ut1", shared("blocklists-sample", "blacklists"), "ut1", comp)
    comp.write(tmp_path / "lists.idx")
    ref, index = ref_builder.freeze(), CompiledIndex.open(tmp_path / "lists.idx")
    traffic = _traffic()
    assert len(traffic) > 130_000
    differ = [
        (h, p)
        for h, p in traffic
        if sorted(index.match(h, p), key=repr) != sorted(ref.match(h, p), key=repr)
    ]
    assert differ == []
    hits = sum(1 for h, p in traffic if index.match(h, p))
    assert hits > 20_000  # about 14% of the hosts and 21% of the URLs are listed


def test_plain_iwf_urls_hash_only_the_lookups_on_their_hosts(tmp_path: Path) -> None:
    """With every IWF host known, other hosts skip the hashing and hits stay the same."""
    lst = tmp_path / "iwf.txt"
    lst.write_text("http://bad.example/dir/\nhttp://worse.example\nx.example/f\n")
    comp, ref = CompiledBuilder(), IndexBuilder()
    read_source("iwf", lst, "iwf", comp)
    read_source("iwf", lst, "iwf", ref)
    read_source("plain", lst, "plain", comp)  # path entries on the same hosts
    read_source("plain", lst, "plain", ref)
    comp.write(tmp_path / "i.idx")
    index, reference = CompiledIndex.open(tmp_path / "i.idx"), ref.freeze()
    assert index.meta["hashed_everywhere"] is False
    assert b"bad.example" not in (tmp_path / "i.idx").read_bytes()
    for host, path in [
        ("bad.example", "/dir/a"),
        ("www.bad.example", "/dir/a"),
        ("bad.example", "/dir"),
        ("a.worse.example", "/"),
        ("a.worse.example", None),
        ("x.example", "/f?x"),
        ("x.example", "/fx"),
        ("x.example", None),
        ("elsewhere.example", "/dir/"),
    ]:
        for _ in range(2):  # cold, then from the memo
            got = sorted(index.match(host, path), key=repr)
            assert got == sorted(reference.match(host, path), key=repr), (host, path)
        assert index.has_paths(host) == reference.has_paths(host)


def test_path_prefixes_mirror_path_matches() -> None:
    """Every prefix path_prefixes yields is accepted by path_matches, and no other one is."""
    from blocklists.index import path_matches, path_prefixes

    for path in ["/a/b.html?q=1", "/dir/page.php;x", "/x.y.z/w", "/", "/a//b"]:
        yielded = set(path_prefixes(path))
        accepted = {path[:i] for i in range(1, len(path) + 1) if path_matches(path[:i], path)}
        assert yielded == accepted, path


# -- the file on disk: private snapshots, verification, failing closed ---------------------


def flip(path: Path, offset: int, count: int = 16) -> None:
    """Invert ``count`` bytes at ``offset`` in place (the same inode, as a stray write would)."""
    with path.open("r+b") as f:
        f.seek(offset)
        data = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))


def written(tmp_path: Path, entries: dict[str, list[str]] = ENTRIES) -> Path:
    path = tmp_path / "lists.idx"
    build(entries)[1].write(path)
    return path


def test_the_index_file_is_written_new_never_in_place(tmp_path: Path) -> None:
    """Each write gives the live name a new inode, so a mapping of the old one never changes."""
    path = written(tmp_path)
    first = path.stat().st_ino
    old = CompiledIndex.open(path)
    written(tmp_path, {"c": ["new.example"]})
    assert path.stat().st_ino != first
    assert old.verify()
    assert old.match("example.com")
    assert not list(tmp_path.glob(".*tmp"))


def test_a_snapshot_is_private_named_by_checksum_and_shared(tmp_path: Path) -> None:
    """open_private maps a 0400 copy in a 0700 folder; a second opener maps the same file."""
    path, private = written(tmp_path), tmp_path / "mapped"
    one = open_private(path, private)
    two = open_private(path, private)
    (snap,) = private.glob("*.idx")
    assert one.path == two.path == snap
    assert snap.name.startswith(f"{one.checksum:016x}-")
    assert snap.stat().st_mode & 0o777 == SNAPSHOT_MODE
    assert private.stat().st_mode & 0o777 == 0o700
    assert snap.stat().st_ino != path.stat().st_ino
    assert one.match("example.com") == two.match("example.com") != NO_HITS


def test_writes_to_the_live_file_never_reach_a_snapshot(tmp_path: Path) -> None:
    """Zeroed, truncated or overwritten in place, lists.idx leaves the mapped copy intact."""
    path = written(tmp_path)
    index = open_private(path, tmp_path / "mapped")
    with path.open("r+b") as f:
        f.seek(200)
        f.write(b"\0" * (path.stat().st_size - 300))
    assert index.verify()
    path.write_bytes(b"")  # truncate in place, as `cp other lists.idx` starts
    assert index.verify()
    assert index.match("example.com")
    with pytest.raises(IndexFormatError, match="too short"):
        open_private(path, tmp_path / "mapped")


def test_a_damaged_live_file_is_caught_though_its_header_is_intact(tmp_path: Path) -> None:
    """A body zeroed in place fails open_private even while a snapshot of that name exists."""
    path = written(tmp_path)
    open_private(path, tmp_path / "mapped")
    flip(path, path.stat().st_size // 2)
    with pytest.raises(IndexFormatError, match="checksum"):
        open_private(path, tmp_path / "mapped")
    with pytest.raises(IndexFormatError, match="checksum"):
        verify_file(path)


def test_a_damaged_snapshot_fails_closed_and_is_copied_again(tmp_path: Path) -> None:
    """verify() catches the mapped file zeroed in place; lookups then raise; a new open recopies."""
    path = written(tmp_path)
    index = open_private(path, tmp_path / "mapped")
    assert index.match("example.com")  # memoised: must not outlive the failure
    snap = index.path
    snap.chmod(0o600)
    flip(snap, snap.stat().st_size // 2)
    assert not index.verify()
    assert "checksum mismatch" in index.closed_reason
    for host in ("example.com", "never.example"):
        with pytest.raises(IndexFormatError, match="changed in place"):
            index.match(host)
    with pytest.raises(IndexFormatError):
        index.has_paths("example.com")
    again = open_private(path, tmp_path / "mapped")
    assert again.verify()
    assert again.match("example.com")


def test_a_truncated_snapshot_is_caught_without_reading_past_its_end(tmp_path: Path) -> None:
    """verify() sees the size change through the mapping's descriptor first: no SIGBUS."""
    path = written(tmp_path)
    index = open_private(path, tmp_path / "mapped")
    index.path.chmod(0o600)
    with index.path.open("r+b") as f:
        f.truncate(100)
    assert not index.verify()
    assert "size changed to 100 bytes" in index.closed_reason


def test_an_unusable_private_folder_falls_back_to_private_memory(tmp_path: Path) -> None:
    """When the snapshot folder cannot be made, the index is read into anonymous memory."""
    path = written(tmp_path)
    (tmp_path / "blocked").write_text("a file where the folder should be")
    index = open_private(path, tmp_path / "blocked" / "mapped")
    assert index.copied
    path.write_bytes(b"")
    assert index.verify()
    assert index.match("example.com")


def test_write_fsyncs_the_file_then_renames_then_fsyncs_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash can leave the old index or the whole new one, never a half-written file."""
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        calls.append(f"rename {Path(src).name} -> {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    build(ENTRIES)[1].write(tmp_path / "lists.idx")
    assert calls[0] == "fsync file"
    assert calls[1].startswith("rename .lists.idx.")
    assert calls[1].endswith(" -> lists.idx")
    assert calls[2] == "fsync dir"
