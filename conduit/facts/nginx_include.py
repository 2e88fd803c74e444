"""The one line the tool owns in a system nginx.conf, as text: found by its mark, put in after the
load_module lines, taken out byte for byte. Pure text, so the executor edits the live file with it
at run time (the file is not the tool's: what else it holds is read only then)."""

from __future__ import annotations

import re

# Ends the one line the tool owns in nginx.conf; how it is found again.
MANAGED_MARK = "# managed by conduit"
_MODULE_LINE = re.compile(r"^\s*(load_module\s|include\s+\S*modules-enabled/\S*;)")
_BLOCK_OPEN = re.compile(r"^[^#]*\{")


def is_managed_line(line: str) -> bool:
    return line.rstrip().endswith(MANAGED_MARK)


def _lines(text: str) -> list[str]:
    """Lines with their '\n' kept; only '\n' ends a line, as for nginx."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def insert_include(main_conf_text: str, line: str) -> str:
    """nginx.conf with the managed include line in the main context, changing nothing else.

    The line goes after the load_module lines (and Debian's modules-enabled include) at the
    top, because the stream block it pulls in needs the module loaded first and nginx
    refuses load_module once any block has been read. An older managed line is replaced
    where it stands; extra managed lines are dropped (two includes would be two stream blocks).
    """
    line = line.strip()
    lines = _lines(main_conf_text)
    managed = [i for i, text in enumerate(lines) if is_managed_line(text)]
    if len(managed) == 1 and lines[managed[0]].strip() == line:
        return main_conf_text
    if managed:
        first = managed[0]
        lines[first] = line + ("\n" if lines[first].endswith("\n") else "")
        return "".join(text for i, text in enumerate(lines) if i not in managed[1:])
    at = 0
    for i, text in enumerate(lines):
        if _BLOCK_OPEN.match(text):
            break
        if _MODULE_LINE.match(text):
            at = i + 1
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    lines.insert(at, line + "\n")
    return "".join(lines)


def remove_include(main_conf_text: str) -> str:
    """nginx.conf without the managed line(s); the rest byte for byte."""
    return "".join(text for text in _lines(main_conf_text) if not is_managed_line(text))
