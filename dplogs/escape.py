"""Escaping untrusted text for each place dplogs shows it.

Released private keys (user names, hosts, URLs), input names, quarantine reasons and model-card
text come from logs or files an attacker may write. Whatever they contain, they must reach a
terminal, a spreadsheet or a Markdown/HTML viewer as inert text: no control sequences, no rich
markup, no formulas, no links or tags. One function per sink; each takes any string and cannot
fail on it.

>>> visible("\\x1b[31mred\\u202e\\n")
'\\\\x1b[31mred\\\\u202e\\\\n'
>>> csv_text("=SUM(A1)"), csv_text("alice")
("'=SUM(A1)", 'alice')
>>> markdown_text("<b>a|b</b>")
'&lt;b&gt;a\\\\|b&lt;/b&gt;'
"""

from __future__ import annotations

import re
import unicodedata

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    if ch.isprintable() or unicodedata.category(ch) == "Zs":
        return ch  # str.isprintable() also rejects spaces such as U+00A0: they are harmless
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every control or format character (C0/C1 controls such as ESC, CR, BEL;
    bidi overrides and isolates such as U+202E; zero-width characters; line/paragraph separators;
    lone surrogates; unassigned code points) written as a Python-style escape (``\\x1b``,
    ``\\u202e``; ``\\t``, ``\\n``, ``\\r``), so a terminal or viewer shows it and never obeys it.
    Backslashes themselves are kept as they are (``CORP\\alice`` stays readable)."""
    if text.isprintable():  # C-speed check; almost every value takes this path
        return text
    return "".join(_escape_char(ch) for ch in text)


def for_terminal(text: str) -> str:
    """Multi-line ``text`` for a terminal: :func:`visible` on each line, newlines kept."""
    return "\n".join(visible(line) for line in text.split("\n"))


# OWASP "CSV injection": a cell starting with one of these is read as a formula by spreadsheets
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text: str) -> str:
    """A text cell a spreadsheet will not evaluate: a leading ``'`` when the cell starts with
    ``= + - @``, tab or CR (OWASP's recommendation; the CSV writer adds the quoting)."""
    return "'" + text if text.startswith(CSV_FORMULA_START) else text


# the formula-start rule for whole polars string columns (csv_text's, vectorised)
CSV_FORMULA_PATTERN = r"^[=+\-@\t\r]"

# ASCII punctuation with an inline meaning in CommonMark/GFM: escapes, code, emphasis, link and
# image brackets (without "[" no "](url)" or "![" forms a link), table cells, strikethrough, math;
# & < > become entities so no HTML tag or entity survives
_MARKDOWN = re.compile(r"[\\`*_\[\]|~$&<>]")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def markdown_text(text: str) -> str:
    """``text`` as inert Markdown inline text, safe inside a table cell: controls and newlines
    made visible (:func:`visible`), HTML characters as entities, Markdown metacharacters and
    ``|`` backslash-escaped."""
    return _MARKDOWN.sub(lambda m: _ENTITIES.get(m.group(), "\\" + m.group()), visible(text))
