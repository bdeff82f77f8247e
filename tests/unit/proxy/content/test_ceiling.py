"""The ceiling: the most a page could score, read from its bytes, is never below its score.

A page that passes on its ceiling is never analysed in full, so a ceiling below
the full score would let through a page the analysis blocks. These tests hold it
to the full score on the labelled texts of ``bench/content-eval`` in many
disguises (markup, case, leetspeak, look-alike letters, invisible characters,
wide forms, accents), and make sure what the ceiling cannot see through
(character references, NUL) gets no ceiling at all.
"""

from __future__ import annotations

import html
from pathlib import Path

import pytest
import yaml

from proxy.content import ceiling
from proxy.content.extract import html_text
from proxy.content.phrases import PhraseScorer, load_phrases

ROOT = Path(__file__).resolve().parents[4]

pytestmark = pytest.mark.skipif(
    not ceiling.available(), reason="hyperscan has no wheel for this machine"
)

LABELLED: dict[str, list[str]] = yaml.safe_load(
    (ROOT / "bench" / "content-eval" / "positive.yaml").read_text(encoding="utf-8")
)
TEXTS = [text for texts in LABELLED.values() for text in texts]

# Cyrillic and Greek letters that look like Latin ones (the look-alike table folds them).
LOOKALIKES = str.maketrans({"o": "\u043e", "e": "\u0435", "a": "\u0430", "p": "\u0440"})
LEET = str.maketrans({"o": "0", "i": "1", "e": "3", "a": "4", "s": "5"})
# Full-width forms (ｐｏｒｎ), which NFKC folds back to ASCII.
WIDE = str.maketrans({code: code + 0xFEE0 for code in range(ord("!"), ord("~") + 1)})


def disguises(text: str) -> dict[str, str]:
    """HTML pages saying ``text`` in ways the full analysis sees through."""
    words = text.split()
    half = len(words) // 2
    return {
        "paragraph": f"<html><body><p>{html.escape(text, quote=False)}</p></body></html>",
        "upper case": f"<p>{text.upper()}</p>",
        "leetspeak": f"<p>{text.lower().translate(LEET)}</p>",
        "look-alike letters": f"<p>{text.translate(LOOKALIKES)}</p>",
        "zero-width joins": "<p>" + "\u200b".join(text) + "</p>",
        "soft hyphens": "<p>" + "\u00ad".join(text) + "</p>",
        "wide forms": "<p>" + text.translate(WIDE) + "</p>",
        "accents": "<p>" + "".join(c + "\u0301" if c.isalpha() else c for c in text) + "</p>",
        "a word per tag": "".join(f"<span>{w}</span>" for w in words),
        "title and body": f"<title>{' '.join(words[:half])}</title><p>{' '.join(words[half:])}",
        "image descriptions": "".join(f'<img alt="{w}">' for w in words) + "<p>x</p>",
        "comments between words": "<p>" + " <!-- > --> ".join(words) + "</p>",
        "scripts between words": "<p>" + "<script>var x = 1</script>".join(words) + "</p>",
        "line breaks": "<pre>" + "\r\n".join(words) + "</pre>",
    }


@pytest.fixture(scope="module")
def scorer() -> PhraseScorer:
    return load_phrases(ROOT / "config" / "content-phrases.yaml")


def assert_at_least(scorer: PhraseScorer, page: str) -> dict[str, int] | None:
    most = scorer.ceiling(page.encode("utf-8"))
    scores = scorer.score(html_text(page)).by_category
    if most is not None:
        for category, score in scores.items():
            assert most.get(category, 0) >= score, (category, score, most, page[:200])
    return most


@pytest.mark.parametrize("text", TEXTS, ids=[t[:30] for t in TEXTS])
def test_the_ceiling_is_never_below_the_score_of_a_labelled_text_in_any_disguise(
    scorer: PhraseScorer, text: str
) -> None:
    for how, page in disguises(text).items():
        most = assert_at_least(scorer, page)
        assert most is not None, how  # none of these needs a reference or a NUL


def test_every_labelled_text_that_crosses_reaches_the_threshold_on_its_ceiling(
    scorer: PhraseScorer,
) -> None:
    """So no page the analysis would block is ever passed on its ceiling."""
    crossing = 0
    for text in TEXTS:
        page = f"<p>{text}</p>"
        scores = scorer.score(html_text(page))
        for category, score in scores.by_category.items():
            if score >= 100:
                crossing += 1
                most = scorer.ceiling(page.encode())
                assert most is not None
                assert most[category] >= 100
    assert crossing >= len(TEXTS) // 2


@pytest.mark.parametrize(
    "page",
    [
        "<p>free p&#111;rn videos</p>",  # decimal
        "<p>free p&#x6F;rn videos</p>",  # hexadecimal
        "<p>free p&#111rn videos</p>",  # no ";": read the same
        "<p>free p&oacute;rn videos</p>",  # ó folds to o
        "<p>free p&oacutern videos</p>",  # a legacy reference needs no ";"
        "<p>free &#138;porn</p>",  # 0x80-0x9F are windows-1252: Š
        "<p>free &#82;ude</p>",  # "R" (while &#8217; is a quote)
        "<p>free p\x00orn videos</p>",  # the parser drops a NUL from text
    ],
)
def test_a_reference_to_a_letter_or_a_nul_gives_no_ceiling(scorer: PhraseScorer, page: str) -> None:
    """The page is analysed in full instead (and a reference is read as the letter it is)."""
    assert scorer.ceiling(page.encode()) is None


@pytest.mark.parametrize(
    "page",
    ["<p>fish &amp; chips &lt;b&gt; &nbsp; &#39;quoted&#39; &#8217; &#x2014; &copy; &#0;</p>"],
)
def test_references_to_punctuation_still_give_a_ceiling(scorer: PhraseScorer, page: str) -> None:
    assert scorer.ceiling(page.encode()) == {}


def test_a_phrase_counts_at_most_as_often_as_its_rarest_word(tmp_path: Path) -> None:
    path = tmp_path / "content-phrases.yaml"
    path.write_text(
        "categories:\n  weapons:\n    phrases:\n      en: {how to make a gun: 60, knife: 10}\n",
        encoding="utf-8",
    )
    scorer = load_phrases(path)
    how_to = "<p>" + "how to make a cake. " * 40 + "</p>"
    assert scorer.ceiling(how_to.encode()) == {}  # "gun" is not there
    assert scorer.ceiling((how_to + "<p>gun gun</p>").encode()) == {"weapons": 120}
    # The cap: a word there 40 times counts 5 (POSITIVE_CAP), as the full score does.
    knives = "<p>" + "knife " * 40 + "</p>"
    assert scorer.ceiling(knives.encode()) == {"weapons": 50}
    assert scorer.score(html_text(knives)).by_category == {"weapons": 50}
    # Only whole words: "knifes" and "penknife" are not "knife" (on the page or on its ceiling).
    assert scorer.ceiling(b"<p>knifes penknife knife_</p>") == {"weapons": 10}


def test_a_page_with_words_only_in_its_markup_gets_a_ceiling_but_no_score(
    scorer: PhraseScorer,
) -> None:
    """Scripts, styles and attributes count on the ceiling (higher than need be, never lower)."""
    page = '<script>var porn = "free porn"</script><a href="/porn">x</a><p>a walk</p>'
    most = scorer.ceiling(page.encode())
    assert most is not None
    assert most.get("adult", 0) > 0
    assert scorer.score(html_text(page)).by_category.get("adult", 0) == 0


def test_benign_documentation_is_passed_on_its_ceiling(scorer: PhraseScorer) -> None:
    """What the shortcut is for: a page about ordinary things cannot reach 100."""
    page = (
        "<html><head><title>Installing the library</title></head><body><h1>Usage</h1>"
        + "<p>Run the installer, then open the settings page and choose a folder. The "
        "command prints its version and exits; see the manual for every option.</p>"
        * 50
        + "</body></html>"
    )
    most = scorer.ceiling(page.encode())
    assert most is not None
    assert all(score < 100 for score in most.values()), most


def test_without_hyperscan_there_is_no_ceiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ceiling, "hyperscan", None)
    scorer = load_phrases(ROOT / "config" / "content-phrases.yaml")
    assert scorer.ceiling(b"<p>a walk in the park</p>") is None
    assert scorer.score("free porn").by_category["adult"] > 0
