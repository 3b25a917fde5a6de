"""dplogs.escape: each sink's escaping leaves nothing for its reader to obey, for any text."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dplogs.escape import CSV_FORMULA_START, csv_text, for_terminal, markdown_text, visible


def shown(ch: str) -> bool:
    """A character a terminal displays rather than obeys."""
    return ch.isprintable() or unicodedata.category(ch) == "Zs"


@pytest.mark.parametrize("text,expected", [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("\x1b]8;;https://evil\x07x", "\\x1b]8;;https://evil\\x07x"),
    ("\tx\rx\nx", "\\tx\\rx\\nx"),
    ("a\u202eb\u2066c\u200bd\u2028", "a\\u202eb\\u2066c\\u200bd\\u2028"),
    ("\x85\x9b", "\\x85\\x9b"),  # C1 controls, NEL and CSI
    ("CORP\\alice ü 東京 \u00a0", "CORP\\alice ü 東京 \u00a0"),  # readable text stays as it is
])
def test_visible(text, expected):
    assert visible(text) == expected


@settings(max_examples=500)
@given(st.text())
def test_visible_output_is_only_shown_characters(text):
    out = visible(text)
    assert all(shown(ch) for ch in out)
    assert visible(out) == out
    if all(shown(ch) for ch in text):
        assert out == text


def test_for_terminal_keeps_lines():
    assert for_terminal("a\x1b[2J\nb\r\n") == "a\\x1b[2J\nb\\r\n"


@given(st.text())
def test_csv_text_neutralises_exactly_the_formula_starts(text):
    out = csv_text(text)
    if text.startswith(CSV_FORMULA_START):
        assert out == "'" + text
    else:
        assert out == text


def _cell(text: str):
    """The body cell of a one-column GFM table holding ``text``, parsed by markdown-it."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    tokens = md.parse(f"| h |\n|---|\n| {text} |\n")
    cells = [i for i, t in enumerate(tokens) if t.type == "td_open"]
    assert len(cells) == 1, "the text split the row or the table"
    return tokens[cells[0] + 1].children or []


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_markdown_text_is_one_inert_table_cell(text):
    children = _cell(markdown_text(text))
    assert {t.type for t in children} <= {"text"}, "markup survived: " + repr([t.type for t in children])
    assert "".join(t.content for t in children) == visible(text).strip()  # a cell is trimmed


@pytest.mark.parametrize("text", [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](https://evil)", "![i](https://evil/p.png)",
    "*bold* _em_ `code` ~~del~~", "a|b", "line\nbreak", "&lt;", "<https://evil>", "\\|", "x\\",
])
def test_markdown_text_hostile_examples(text):
    children = _cell(markdown_text(text))
    assert [t.type for t in children] in ([], ["text"])
    assert "".join(t.content for t in children) == visible(text)
