"""A value someone else wrote (a Docker label, a container's name) shown inside one line."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from conduit.facts.oneline import WIDTH, one_line


@given(st.text(), st.integers(min_value=1, max_value=200))
def test_any_value_is_one_printable_bounded_line(value, width):
    shown = one_line(value, width)
    assert len(shown) <= width + 1  # and the "…" of a cut
    assert shown.isprintable() and "\n" not in shown  # no control, format, separator or unassigned character
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in shown)


@given(st.text(st.characters(blacklist_categories=["C", "Z"], blacklist_characters="\\"), min_size=1, max_size=WIDTH))
def test_plain_text_is_shown_as_it_is(value):
    assert one_line(value) == value


SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}


def read_back(shown: str) -> str:
    """The value again from its escapes, as Python writes them in a string literal."""
    return re.sub(r"\\(x..|u....|U........|.)", lambda m: SIMPLE.get(m[1]) or chr(int(m[1][1:], 16)), shown)


@given(st.text(min_size=1, max_size=WIDTH // 10))
def test_a_short_value_is_shown_whole_and_reads_back_as_it_was(value):
    assert read_back(one_line(value)) == value  # two values never look the same


def test_controls_are_escaped_and_a_long_value_cut():
    assert one_line("a\nb\r\x1b[2J\u202ec\\d") == "a\\nb\\r\\x1b[2J\\u202ec\\\\d"
    assert one_line("edge") == "edge" and one_line("") == '""'
    assert one_line("z" * 100, 10) == "z" * 10 + "…"
    assert one_line("z" * 9 + "\n", 10) == "z" * 9 + "…"  # an escape is never cut in two
