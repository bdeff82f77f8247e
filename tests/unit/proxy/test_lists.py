"""``proxy.lists``: the per-list checks a list update must pass before it goes in."""

from __future__ import annotations

import pytest

from proxy.lists import UpdateResult, _refusal


def result(before: dict[str, int] | None, after: dict[str, int]) -> UpdateResult:
    """An update of source ``ut1`` with these entries per list (aliases not counted in totals)."""
    r = UpdateResult("ut1", "http://lists.example/ut1.tar.gz", "failed")
    if before is not None:
        r.lists_before = before
        r.before = sum(n for name, n in before.items() if name != "ut1/porn")
    r.lists_after = after
    r.after = sum(n for name, n in after.items() if name != "ut1/porn")
    return r


def test_a_category_gone_is_refused_though_the_total_barely_moves() -> None:
    """adult/ missing, the others doubled (total -2.6%): refused, naming adult and its count."""
    r = result(
        {"ut1/adult": 1026, "ut1/gambling": 487, "ut1/games": 487},
        {"ut1/gambling": 974, "ut1/games": 974},
    )
    assert (r.before, r.after) == (2000, 1948)  # -2.6%: the source-level check alone passes
    reason = _refusal(r, 0.25, False, set())
    assert reason == "lists gone or shrunk: ut1/adult"
    assert r.problems == ["ut1/adult: gone (was 1026 entries)"]
    assert r.list_counts()["ut1/adult"] == [1026, None]


@pytest.mark.parametrize(
    ("before", "after", "max_shrink", "problems"),
    [
        # one category shrinks past max_shrink while the total grows
        (
            {"ut1/adult": 100, "ut1/games": 100},
            {"ut1/adult": 70, "ut1/games": 400},
            0.25,
            ["ut1/adult: 100 -> 70 entries (-30.0%, more than the 25% allowed)"],
        ),
        # within max_shrink: accepted
        ({"ut1/adult": 100, "ut1/games": 100}, {"ut1/adult": 80, "ut1/games": 100}, 0.25, []),
        # emptied: refused even when any shrinking is allowed
        (
            {"ut1/adult": 100, "ut1/games": 100},
            {"ut1/adult": 0, "ut1/games": 300},
            1.0,
            ["ut1/adult: emptied (was 100 entries)"],
        ),
        # a new category, an empty one staying empty: nothing to say
        (
            {"ut1/adult": 100, "ut1/empty": 0},
            {"ut1/adult": 100, "ut1/empty": 0, "ut1/new": 5},
            0.25,
            [],
        ),
        # an alias gone is a name a policy may use gone; an alias's shrink is its target's
        (
            {"ut1/adult": 100, "ut1/porn": 100},
            {"ut1/adult": 10},
            0.25,
            [
                "ut1/adult: 100 -> 10 entries (-90.0%, more than the 25% allowed)",
                "ut1/porn: gone (was 100 entries)",
            ],
        ),
    ],
)
def test_each_list_is_checked_on_its_own(
    before: dict[str, int], after: dict[str, int], max_shrink: float, problems: list[str]
) -> None:
    """Every list that disappears, empties or shrinks past max_shrink is one line."""
    r = result(before, after)
    reason = _refusal(r, max_shrink, False, {"ut1/porn"})
    assert r.problems == problems
    assert bool(reason) == bool(problems)


def test_the_first_fetch_has_nothing_to_compare_with() -> None:
    """With no copy before, any non-empty copy goes in."""
    r = result(None, {"ut1/adult": 3})
    assert _refusal(r, 0.25, False, set()) == ""


def test_an_empty_copy_is_refused() -> None:
    """A copy with no entries at all is refused, first fetch or not."""
    assert _refusal(result(None, {"ut1/adult": 0}), 0.25, False, set()).startswith(
        "the new copy holds no entries"
    )


@pytest.mark.parametrize(
    ("before", "after", "refused"),
    [
        ({"iwf": 1000}, {"iwf": 999}, True),  # one entry fewer
        ({"iwf": 1000}, {"iwf": 1000}, False),
        ({"iwf": 1000}, {"iwf": 1200}, False),
        ({"iwf": 1000}, {"iwf": 0}, True),
        ({"iwf/a": 10, "iwf/b": 10}, {"iwf/a": 9, "iwf/b": 30}, True),  # a list shrinks
    ],
)
def test_an_illegal_source_may_not_shrink_at_all(
    before: dict[str, int], after: dict[str, int], refused: bool
) -> None:
    """For an illegal source any loss, in all or in one list, is a refusal whatever max_shrink."""
    r = UpdateResult("iwf", "http://iwf.example/list", "failed")
    r.lists_before, r.before = before, sum(before.values())
    r.lists_after, r.after = after, sum(after.values())
    assert bool(_refusal(r, 1.0, True, set())) is refused
