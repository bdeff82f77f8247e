"""The phrase lists: folding, whole-word matching, weights, exceptions and the file's errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from proxy.content import phrases
from proxy.content.phrases import NEGATIVE_CAP, PhraseScorer, fold, load_phrases
from proxy.yamlfile import ConfigError

ROOT = Path(__file__).resolve().parents[4]

PHRASES = """\
categories:
  adult:
    phrases:
      en: {porn: 15, free porn: 50, sex education: -40, nudes: 20}
      pl: {darmowe porno: 50}
    exceptions:
      en: [museum of art nudes]
  self_harm:
    phrases:
      en: {kill myself: 40, samaritans: -40}
"""


@pytest.fixture
def scorer(tmp_path: Path) -> PhraseScorer:
    path = tmp_path / "content-phrases.yaml"
    path.write_text(PHRASES, encoding="utf-8")
    return load_phrases(path)


def errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "content-phrases.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_phrases(path)
    return str(caught.value).splitlines()


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Free PORN videos!!", " free porn videos "),  # case and punctuation
        ("p0rn", " porn "),  # digits that read as letters
        ("рorn", " porn "),  # a Cyrillic р
        ("Ñandú  café", " nandu cafe "),  # accents
        ("darmowe\u200bporno", " darmoweporno "),  # a zero-width space joins, as a reader sees
        # Runs of non-ASCII beside ASCII (the encoder's error handler folds each run whole):
        ("Ｆｒｅｅ\xa0ＰＯＲＮ—now", " free porn now "),  # fullwidth, a no-break space, a dash
        ("ПОРНО-видео", " пopнo видeo "),  # Cyrillic look-alikes mapped, the rest kept
        ("x\ud800y", " x y "),  # a lone surrogate (undecodable bytes) is a separator
        ("Straße GRÜẞE", " strasse grusse "),  # case folding that lengthens a word
    ],
)
def test_fold_makes_one_spelling(text: str, folded: str) -> None:
    """Case, accents, look-alikes, repeats and punctuation fold to words joined by spaces."""
    assert fold(text) == folded


def test_every_occurrence_adds_its_weight(scorer: PhraseScorer) -> None:
    """Three "porn" and one "free porn" score 3x15 + 50 + 15 (the "porn" inside it counts too)."""
    scores = scorer.score("Free porn! porn, PORN and p0rn.")
    assert scores.by_category["adult"] == 4 * 15 + 50


def test_only_whole_words_match(scorer: PhraseScorer) -> None:
    """ "porn" inside another word, or split across words, is not a phrase."""
    assert scorer.score("pornography is a word; por n; eporn").by_category == {}


def test_negative_phrases_pull_down_and_are_capped(scorer: PhraseScorer) -> None:
    """A sex education page is not adult, but repeating the phrase cannot launder a page."""
    assert scorer.score("porn in sex education").by_category["adult"] == 15 - 40
    laundered = scorer.score("free porn " * 4 + "sex education " * 50)
    assert laundered.by_category["adult"] == 4 * 65 - 40 * NEGATIVE_CAP


def test_an_exception_phrase_zeroes_its_category(scorer: PhraseScorer) -> None:
    """A page with an exception phrase scores nothing in that category, and lists no phrase."""
    scores = scorer.score("nudes nudes nudes at the museum of art nudes; kill myself")
    assert scores.by_category["adult"] == 0
    assert scores.excepted == {"adult"}
    assert {hit.category for hit in scores.hits} == {"self_harm"}


def test_crossed_lists_categories_over_their_threshold(scorer: PhraseScorer) -> None:
    """Only categories at or over their threshold cross, highest score first."""
    scores = scorer.score("free porn free porn kill myself")
    assert scores.crossed({"adult": 100, "self_harm": 40}) == [("adult", 130), ("self_harm", 40)]
    assert scores.crossed({"adult": 131, "self_harm": 41}) == []


def test_the_hits_say_which_phrases_counted(scorer: PhraseScorer) -> None:
    """Each phrase that counted is listed once, with its weight and how often it occurred."""
    hits = scorer.score("darmowe porno, darmowe porno").phrases_for("adult")
    assert [(h.phrase, h.weight, h.count) for h in hits] == [("darmowe porno", 50, 2)]


def test_errors_name_the_line(tmp_path: Path) -> None:
    """Unknown categories, short phrases and zero weights are reported as FILE:LINE."""
    problems = errors(
        tmp_path,
        "categories:\n"
        "  adult:\n"
        "    phrases:\n"
        "      en: {ok phrase: 10, ab: 5, zero weight: 0}\n"
        "  poetry:\n"
        "    phrases: {en: {rhyme: 5}}\n",
    )
    path = tmp_path / "content-phrases.yaml"
    assert any(p.startswith(f"{path}:4:") and "'ab' is too short" in p for p in problems)
    assert any(p.startswith(f"{path}:4:") and "not 0" in p for p in problems)
    assert any(p.startswith(f"{path}:5:") and "unknown category 'poetry'" in p for p in problems)


def test_the_shipped_phrase_file_loads() -> None:
    """config/content-phrases.yaml is valid and covers every category."""
    scorer = load_phrases(ROOT / "config" / "content-phrases.yaml")
    assert scorer.count > 100


def test_long_non_ascii_runs_are_folded_but_not_kept() -> None:
    """A paragraph of Chinese is one run with no ASCII in it: folded like a short one,
    but not kept in the cache of runs (which stays a few megabytes at most)."""
    paragraph = "色情" * 5_000
    before = phrases._fold_wide.cache_info().currsize
    assert fold(paragraph) == fold(paragraph) == " " + paragraph + " "
    assert phrases._fold_wide.cache_info().currsize == before


def test_a_mark_reads_as_a_space_or_as_nothing_whichever_finds_a_phrase(
    scorer: PhraseScorer,
) -> None:
    """Per place, not per page: a page cannot hide some phrases behind marks read as spaces
    and others behind marks read as nothing. (MARK: where two pieces of a page's text meet.)"""
    m = phrases.MARK
    # "free|porn" reads "free porn" (50) and its "porn" (15); "p|orn" reads "porn", three
    # times; "nu|des" reads "nudes" (20), twice. "porn" counts five times, its cap.
    page = f"free{m}porn. free{m}porn. p{m}orn p{m}orn p{m}orn. nu{m}des nu{m}des"
    spaced = page.replace(m, " ")
    joined = page.replace(m, "")
    either = scorer.score(page).by_category["adult"]
    assert either == 2 * 50 + 5 * 15 + 2 * 20
    assert either > max(
        scorer.score(spaced).by_category["adult"], scorer.score(joined).by_category["adult"]
    )
    # One phrase that needs one mark read as a space and another as nothing: neither reading
    # of the whole page finds it.
    assert scorer.score(f"free{m}po{m}rn").by_category["adult"] == 50 + 15
    assert scorer.score("free po rn").by_category == scorer.score("freeporn").by_category == {}
    # Runs of marks and spaces read as one; a space never reads as nothing.
    assert scorer.score(f"free{m}{m} {m}porn p{m}{m}{m}orn").by_category["adult"] == 50 + 2 * 15
    assert scorer.score("p orn").by_category == {}


def brute_force(scorer: PhraseScorer, data: bytes) -> set[tuple[int, int]]:
    """Every reading of folded ``data`` (each mark a space or nothing, every combination),
    and the phrases each finds, as (phrase, where its last letter stands in ``data``)."""
    keys = [fold(found[0].phrase).split() for found in scorer._found]
    marks = [i for i, byte in enumerate(data) if byte == 1]
    found: set[tuple[int, int]] = set()
    for choice in range(1 << len(marks)):
        spaces = {at for bit, at in enumerate(marks) if choice >> bit & 1}
        words: list[tuple[str, int]] = []  # each word of the reading, where its end stands
        letters, last = "", 0
        for i, byte in enumerate(data):
            if byte == 0x20 or i in spaces:
                if letters:
                    words.append((letters, last))
                letters = ""
            elif byte != 1:
                letters, last = letters + chr(byte), i
        if letters:
            words.append((letters, last))
        texts = [word for word, _ in words]
        for phrase, key in enumerate(keys):
            for start in range(len(words) - len(key) + 1):
                if texts[start : start + len(key)] == key:
                    found.add((phrase, words[start + len(key) - 1][1]))
    return found


WORDS = ["free", "porn", "po", "rn", "sex", "cams", "live", "explicit", "content", "nude",
         "girls", "how", "to", "kill", "myself", "the", "river", "a", "x", "18",
         "only"]  # fmt: skip
SEPARATORS = [" ", " ", " ", "  ", ", ", ". ", phrases.MARK, phrases.MARK * 2,
              " " + phrases.MARK, phrases.MARK + " ", "\n\t "]  # fmt: skip


def random_text(rng: random.Random, words: int) -> str:
    return "".join(rng.choice(WORDS) + rng.choice(SEPARATORS) for _ in range(words))


@pytest.mark.parametrize("seed", range(60))
def test_what_is_found_is_what_every_reading_of_the_marks_finds(seed: int) -> None:
    """Random short texts of phrase words, other words, punctuation, spaces and marks: the
    phrases found are those that some reading of the marks (each a space or nothing) finds,
    every reading tried."""
    scorer = load_phrases(ROOT / "config" / "content-phrases.yaml")
    rng = random.Random(seed)
    text = random_text(rng, rng.randint(1, 14))
    while text.count(phrases.MARK) > 10:
        text = random_text(rng, rng.randint(1, 14))
    data = phrases.folded(text)
    found = {(phrase, end - 3) for phrase, end in scorer.matches(b" " + data + b" ")}
    assert found == brute_force(scorer, data), text


@pytest.mark.parametrize("seed", range(100))
def test_matching_near_the_marks_only_finds_what_matching_everywhere_finds(seed: int) -> None:
    """Random long texts: matching marks read as nothing only around letters joined by
    marks gives what matching them so across the whole text gives."""
    scorer = load_phrases(ROOT / "config" / "content-phrases.yaml")
    rng = random.Random(seed)
    data = b" " + phrases.folded(random_text(rng, rng.randint(1, 400))) + b" "
    everywhere: set[tuple[int, int]] = set()
    assert scorer._joined is not None
    scorer._joined.scan(data, match_event_handler=lambda p, _s, e, _f, _c: everywhere.add((p, e)))
    assert scorer.matches(data) == everywhere


def test_text_after_a_right_to_left_override_is_read_as_shown(scorer: PhraseScorer) -> None:
    """U+202E shows the letters after it in reverse order: "\u202enrop eerf" shows
    "free porn"."""
    assert scorer.score("nrop eerf").by_category == {}
    assert scorer.score("\u202enrop eerf").by_category["adult"] == 50 + 15
    assert scorer.score_readings(["x", "\u202enrop eerf"]).by_category["adult"] == 50 + 15


@pytest.mark.parametrize("invisible", ["\u00ad", "\u200b", "\u2063", "\u202e", "\x01", "\x1f"])
def test_characters_a_browser_shows_as_nothing_join_the_letters_either_side(
    scorer: PhraseScorer, invisible: str
) -> None:
    """A soft hyphen, a zero-width space, an invisible separator, a direction override, a
    control character: "p\u00adorn" shows "porn"."""
    text = "free " + invisible.join("porn") + " videos"
    assert scorer.score(text).by_category["adult"] >= 50
