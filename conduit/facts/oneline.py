"""A value someone else wrote where conduit reads it (another cluster's Docker label, a container's
name, a marker in a file or a command line), shown inside a line of a warning or a refusal.

Any local process can make a container with any label: a newline or a terminal escape in one would
split the line, or forge one that conduit never wrote.
"""

from __future__ import annotations

WIDTH = 80  # characters shown of such a value, at most; a longer one is cut and ends with "…"


def one_line(value: object, width: int = WIDTH) -> str:
    """`value` as it is when it is plain printable text; else each character that is not (a control,
    format, separator or unassigned one, and the backslash) written as Python writes it in a
    string literal ("\\n", "\\x1b", "\\u202e"). At most `width` characters and the "…" of a cut;
    an empty value is "" (two quotes), not nothing."""
    out, size = [], 0
    for char in str(value):
        piece = char if char.isprintable() and char != "\\" else repr(char)[1:-1]
        if size + len(piece) > width:
            return "".join(out) + "…"
        out.append(piece)
        size += len(piece)
    return "".join(out) or '""'
