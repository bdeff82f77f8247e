"""Page text: what a reader sees, not the scripts and styles around it."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest

from proxy.content import extract
from proxy.content.extract import (
    data_url,
    html_marked,
    html_readings,
    html_text,
    page_marked,
    page_text,
)
from proxy.content.phrases import MARK


def test_html_text_keeps_title_body_and_image_descriptions() -> None:
    """The title, the body's words and alt texts are read; scripts and styles are not. A
    noscript's words are, as a browser with scripts turned off shows them."""
    text = html_text(
        "<html><head><title>Casino night</title><script>var kill = 1</script></head>"
        "<body><p>Hello <b>world</b></p><img alt='a red car'><style>p{}</style>"
        "<noscript>enable js</noscript></body></html>"
    )
    assert "Casino night" in text
    assert "world" in text
    assert "a red car" in text
    assert "kill" not in text
    assert "enable js" in text


def test_plain_text_is_scored_as_it_is() -> None:
    """A text/plain body is not parsed as HTML."""
    assert page_text("<b>not a tag</b>", "text/plain; charset=utf-8") == "<b>not a tag</b>"
    assert page_text("<b>a tag</b>", "text/html; charset=utf-8").strip() == "a tag"


def test_nested_unread_elements_go_with_their_parents() -> None:
    """A script inside an svg, a style inside noscript, a template's script: none is read, and
    the text around them is kept in order (an svg's own text is drawn, so it is read; so is a
    noscript's, read as a document of its own)."""
    html = (
        "<html><head><title>T</title><script>head</script></head><body>"
        "<svg><script>evil</script><style>s</style><text>drawn</text></svg><p>one "
        "<template><script>t</script>tpl</template>two</p>"
        "<noscript><style>n</style>ns</noscript><p>three</p></body></html>"
    )
    assert html_text(html).split() == ["T", "ns", "drawn", "one", "two", "three"]


def test_a_title_in_the_body_is_read_once() -> None:
    """The title is the head's: a title element in the body is read with the body, not a
    second time in front of it (its words would count twice)."""
    assert html_text("<body><title>free porn</title><p>x</p></body>").split() == [
        "free",
        "porn",
        "x",
    ]
    assert html_text("<head><title>T</title></head><body><p>x</p></body>").split() == ["T", "x"]


def test_the_text_is_read_with_and_without_a_space_between_its_pieces() -> None:
    """A browser shows "p<b>o</b>rn" as "porn" and "<p>one</p><p>two</p>" as two words: the
    first reading parts every piece of text, the second joins them."""
    separated, joined = html_readings(
        "<title>T</title><p>p<b>o</b>r<i></i>n<!-- x -->o</p><p>two</p>"
    )
    assert separated.split() == ["T", "p", "o", "r", "n", "o", "two"]
    assert joined.split() == ["T", "pornotwo"]
    assert page_marked("p<b>o</b>rn", "text/plain") == "p<b>o</b>rn"


@pytest.mark.parametrize(
    "page",
    [
        "<svg><text x='0' y='9'>free porn</text></svg>",  # drawn on the page
        "<iframe srcdoc='<p>free &amp;lt;b&amp;gt;porn</p>'></iframe>",  # a document inside
        "<iframe srcdoc=\"<iframe srcdoc='<p>free porn</p>'></iframe>\"></iframe>",  # in one
        "<iframe src='data:text/html;base64,"
        + base64.b64encode(b"<p>free porn</p>").decode()
        + "'>",
        "<iframe src=' DA\nTA:text/html,%3Cp%3Efree%20porn'></iframe>",  # as a browser reads it
        "<object data='data:text/html,free%20porn'></object>",
        "<embed src='data:,free%20porn'>",
        # Pictures that draw the words: an SVG in a data: URL, in an img or an svg's image.
        "<img src='data:image/svg+xml,%3Csvg%3E%3Ctext%3Efree%20porn%3C/text%3E%3C/svg%3E'>",
        "<svg><image href='data:image/svg+xml,%3Csvg%3E%3Ctext%3Efree porn%3C/text%3E'/></svg>",
        "<svg><image xlink:href='data:image/svg+xml;base64,"
        + base64.b64encode(b"<svg><text>free porn</text></svg>").decode()
        + "'/></svg>",
        "<input type='Submit' value='free porn'>",  # a button's label
    ],
)
def test_text_the_page_shows_from_elsewhere_in_its_bytes_is_read(page: str) -> None:
    """What a browser shows without another request (so the proxy never sees it on its own)
    is read with the page."""
    separated, joined = html_readings(f"<body><p>x</p>{page}</body>")
    assert "free porn" in separated.replace("<b>", "")
    assert "porn" in joined


@pytest.mark.parametrize(
    "page",
    [
        # Read as markup (a browser without scripts), these swallowed the rest of the page into
        # what is not read; a browser with scripts shows it.
        "<body><noscript><textarea></noscript><p>free porn</p></body>",
        "<body><noscript><style></noscript><p>free porn</p></body>",
        "<body><noscript><plaintext></noscript><p>free porn</p></body>",
        "<body><noscript><!--</noscript><p>free porn</p><!-- --></body>",
        # What a browser without scripts shows, nested noscripts and references too.
        "<body><noscript><p>free p&#111;rn</p></noscript><p>x</p></body>",
        "<body><noscript><noscript><noscript><noscript>free porn</noscript></noscript>"
        "</noscript></noscript></body>",
    ],
)
def test_a_page_is_read_as_browsers_with_and_without_scripts_show_it(page: str) -> None:
    assert "free porn" in html_text(page)


def test_words_a_browser_shows_from_attributes_and_shadow_roots_are_read() -> None:
    """A declarative shadow root's content is shown (an ordinary template's is not); a text
    box shows its placeholder and its value (a hidden or password input does not)."""
    page = (
        "<body><div><template shadowrootmode='open'><p>shadow <b>words</b></p></template>"
        "light</div><template><p>inert</p></template><input placeholder='wanted'>"
        "<input type=search value='typed'><input type=hidden value='secret'>"
        "<input type=password value='pw'><textarea placeholder='box'></textarea>"
        "<input type=image alt='picture'></body>"
    )
    words = html_text(page).split()
    assert sorted(words) == sorted(["shadow", "words", "light", "wanted", "typed", "box",
                                    "picture"])  # fmt: skip


@pytest.mark.parametrize(
    "inside",
    [
        "<span hidden>x</span>",
        "<span hidden='until-found'>x</span>",
        "<span style='color: red; DISPLAY : none !important'>x</span>",
        "<span style='font-size: 0px'> </span>",
        "<span style='display: n\\6f ne'>x</span>",  # as CSS reads it: an escape
        "<span style='display:/* */none'>x</span>",  # and a comment
        "<rt>x</rt>",
    ],
)
def test_what_a_browser_does_not_show_inside_a_word_does_not_split_it(inside: str) -> None:
    """Hidden letters, a space in zero-size type, a ruby annotation: taken out of the text
    around them (so "p|orn" reads "porn") and read apart."""
    separated, joined = html_readings(f"<body><p>free <ruby>p{inside}orn</ruby></p></body>")
    assert "free porn" in joined
    assert "x" in separated.split() or inside.startswith("<span style='font")


def test_elements_shown_are_not_taken_for_hidden() -> None:
    text = html_text(
        "<body><p>p<span style='display:block'>x</span>orn "
        "<span style='font-size:10px'>big</span> <span style='x-display:none'>y</span></p></body>"
    )
    assert text.split() == ["p", "x", "orn", "big", "y"]


def test_text_shown_in_reverse_is_read_reversed_too() -> None:
    """A bdo element and an inline direction override show their letters reversed."""
    page = (
        "<body><bdo dir=RTL>nrop <b>eerf</b></bdo>"
        "<span style='direction: rtl; unicode-bidi: Bidi-Override'>sedun</span><p>x</p></body>"
    )
    text = html_text(page)
    assert "free  porn" in text
    assert "nudes" in text
    assert "nrop  eerf" in text  # and as it is written


def test_a_hidden_word_inside_a_hidden_block_is_read_apart_from_it() -> None:
    """Nodes are taken out innermost first: the inner hidden word is read apart, and then the
    block without it, as a script showing the block would show it ("free videos")."""
    words = html_text("<body><div hidden>free <span hidden>porn</span> videos</div></body>")
    assert words.split() == ["porn", "free", "videos"]


def test_each_element_is_read_once() -> None:
    """An iframe with both a srcdoc and a src, an image, a button: each once (Lexbor returns
    an element once per selector it matches, and such an iframe was read twice)."""
    page = (
        "<head><title>T</title><title>U</title></head><body>"
        "<iframe srcdoc='<p>free porn</p>' src='data:text/html,hi'></iframe>"
        "<img alt='nudes' src='x.png'><input type='submit' value='go'><p>x</p></body>"
    )
    assert html_text(page).split() == ["T", "nudes", "go", "free", "porn", "x"]


def test_ordinary_frames_and_broken_data_urls_add_nothing() -> None:
    page = "<iframe src='https://example.com/'></iframe><object data='data:image/png;base64,!!'>"
    assert html_readings(page + "<p>x</p>") == ("x", "x")
    assert data_url("data:text/html;base64,%%%") is not None  # decodes what it can, never raises
    assert data_url("https://example.com/") is None


def _documents() -> list[bytes]:
    """Installed HTML documentation (up to 300 files) and pages with every element the
    extraction looks for, in any case."""
    paths = [path for path in sorted(Path("/usr/share/doc").rglob("*.html")) if path.is_file()]
    found = [path.read_bytes() for path in paths[:300]]
    every = (
        "<HTML><Head><TITLE>t</TITLE><STYLE>s</STYLE></HEAD><Body><P HIDDEN>h</P>"
        "<span STYLE='display:none'>n</span><RUBY>a<RT>b</RT><RP>(</RP></RUBY>"
        "<BDO DIR=RTL>cba</BDO><NOSCRIPT><b>ns</b></NOSCRIPT><TEMPLATE SHADOWROOTMODE=open>"
        "<i>sh</i></TEMPLATE><SVG><IMAGE HREF='data:image/svg+xml,%3Csvg%3E%3Ctext%3Esv'/>"
        "</SVG><TEXTAREA PLACEHOLDER=ph></TEXTAREA><INPUT VALUE=iv><IFRAME SRCDOC='<b>if</b>'>"
        "</IFRAME><FRAME SRC='data:,fr'><EMBED SRC='data:,em'><OBJECT DATA='data:,ob'></OBJECT>"
        "<IMG ALT=al><image alt=im></Body></HTML>"
    )
    return [*found, every.encode(), every.lower().encode()]


def test_the_selectors_a_page_needs_find_what_all_of_them_find(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the selectors for names in a page's bytes are run: the text read is the same as
    with all of them."""
    pages = _documents()
    fast = [html_marked(page) for page in pages]
    monkeypatch.setattr(extract, "_wanted", lambda _html: extract._WANTED)
    assert [html_marked(page) for page in pages] == fast
    words = fast[-1].replace(MARK, " ").split()
    # (a frame outside a frameset is dropped by the parser, as by a browser)
    wanted = ["h", "n", "b", "abc", "ns", "sh", "sv", "ph", "iv", "if", "em", "ob", "al"]
    assert [word for word in wanted if word not in words] == []


_SOUP_TAGS = [
    "div", "span", "p", "b", "table", "tr", "td", "template shadowrootmode=open", "template",
    "noscript", "style", "script", "rt", "rp", "ruby", "bdo dir=rtl", "span hidden",
    "span style='display:none'", "span style='font-size:0'", "iframe srcdoc='<p hidden>x</p>'",
    "svg", "image href='data:image/svg+xml,<svg><text>t</text></svg>'", "textarea",
    "input placeholder=p", "select", "option", "head", "body", "html", "title",
    "object data='data:text/html,<b>o</b>'", "math", "foreignObject", "plaintext", "xmp",
    "frameset", "frame src='data:,x'",
]  # fmt: skip
_SOUP_TEXT = ["free", "porn", "p", "orn", " ", "&amp;", "\u202e", "\x00", "<!--", "-->", "<", ">"]


@pytest.mark.parametrize("seed", range(4))
def test_tag_soup_never_breaks_the_reading(seed: int) -> None:
    """Random soup of the elements the reading takes apart (hidden ones inside hidden ones,
    templates, noscripts, frames, unclosed and stray end tags): every document is read, as
    text and as bytes and in pieces, without an error or a crash (the reading removes nodes
    from Lexbor's tree, in C)."""
    rng = random.Random(seed)
    for _ in range(500):
        parts = []
        for _ in range(rng.randint(1, 60)):
            roll = rng.random()
            if roll < 0.4:
                parts.append("<" + rng.choice(_SOUP_TAGS) + ">")
            elif roll < 0.6:
                parts.append("</" + rng.choice(_SOUP_TAGS).split()[0] + ">")
            else:
                parts.append(rng.choice(_SOUP_TEXT))
        page = "".join(parts)
        assert isinstance(html_marked(page), str)
        assert isinstance(html_marked(page.encode()), str)
        assert isinstance(extract.html_parts(page)[0], str)
