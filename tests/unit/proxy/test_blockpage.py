"""The block page's wording for illegal hits: the list's own, and never the address."""

from __future__ import annotations

import pytest

from proxy import blockpage
from proxy.decision import WITHHELD, Decision, Matched


def illegal(category: str, list_name: str) -> Decision:
    return Decision(
        decision="block",
        category=category,
        action="unacceptable",
        incident="illegal",
        incident_type="illegal",
        matched=Matched(list_name, WITHHELD),
        rule=f"category {category} is illegal: blocked for everyone",
        group="pupil",
        user=None,
    )


@pytest.mark.parametrize(
    ("category", "list_name", "wording"),
    [
        ("child_abuse", "iwf", "Internet Watch Foundation"),
        ("terrorism", "ctiru", "unlawful terrorist content"),
        ("illegal_ctiru", "ctiru", "unlawful terrorist content"),
    ],
)
def test_illegal_page_names_the_kind_of_list_and_no_address(
    category: str, list_name: str, wording: str
) -> None:
    """An IWF hit gets the IWF wording, a CTIRU hit the terrorism wording; no URL, no form."""
    page = blockpage.render(
        illegal(category, list_name),
        school="School",
        reference="SG-00000000",
        url="http://terror-demo.example/x",
    )
    assert wording in page
    assert "terror-demo" not in page
    assert 'id="review"' not in page
