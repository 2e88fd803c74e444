"""Properties of what an operator is shown of a node's log (conduit.facts.nodelog.shown): whatever
a node printed, at most N lines and B bytes come out, every character printable, the newest line
last, and a line of plain text comes through as it was."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from conduit.facts.nodelog import printable, shown

escapes = st.sampled_from(["\x1b[31m", "\x1b[2J", "\x1b]0;title\x07", "\x1b]8;;http://x\x1b\\", "\r", "\x08",
                           "\u202e", "\u2066", "\u200b", "\ufeff", "\x00", "\x85", "\u2028", "\x9b"])  # fmt: skip
# A lone ESC takes the character after it with it, as a terminal does: it is in the hostile text only.
hostile = st.lists(st.text(max_size=40) | escapes | st.sampled_from(["\x1b", "\t", "\n"]), max_size=60).map("".join)
plain = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@given(hostile, st.integers(0, 60), st.integers(0, 4000))
def test_whatever_a_node_printed_the_answer_is_bounded_and_printable(raw, lines, size):
    out = shown(raw, lines, size)
    assert len(out) <= lines
    assert len("\n".join(out).encode()) <= size
    assert all(unicodedata.category(c)[0] != "C" and unicodedata.category(c) not in ("Zl", "Zp") for line in out for c in line)
    assert "\x1b" not in "".join(out)


@given(st.lists(plain, min_size=1, max_size=80), st.integers(1, 60))
def test_plain_lines_come_through_unchanged_the_newest_last(lines, count):
    out = shown("\n".join(lines) + "\n", count, 1 << 20)
    assert out == lines[-count:]


@given(st.lists(plain, min_size=1, max_size=80), st.integers(1, 400))
def test_under_the_byte_cap_the_newest_lines_are_kept_and_a_lone_long_line_keeps_its_end(lines, size):
    out = shown("\n".join(lines) + "\n", 100, size)
    assert len("\n".join(out).encode()) <= size
    if len(lines[-1].encode()) > size:
        assert out == [lines[-1][-size:]]
    elif out:
        assert out == lines[-len(out):]


@given(plain, escapes)
def test_an_escape_around_plain_text_is_removed_and_the_text_kept(text, escape):
    assert printable(escape + text + escape) == text
