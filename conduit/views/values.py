"""Values of a plan as a person reads them: sizes in binary units, the part of a command line that
changed, long values cut short (unless the reader asked for everything)."""

from __future__ import annotations

import difflib
import hashlib
import json
import shlex

from rich.markup import escape

LONG = 72
SIZE_FIELDS = frozenset({"memory"})  # resource fields that hold a number of bytes
COMMAND_FIELDS = frozenset({"command", "entrypoint"})  # argv lists: shown as a shell would quote them
_UNITS = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def human_size(n: int) -> str:
    """402653184 -> '384 MiB', 1610612736 -> '1.5 GiB'; two decimals at most, so an odd size is rounded."""
    for unit, factor in _UNITS:
        if n >= factor:
            return f"{n / factor:.2f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} B"


def _scalar(name: str, value: object) -> str | None:
    """A size or a CPU count as a person writes it; None for everything else."""
    if isinstance(value, bool):
        return None
    if name in SIZE_FIELDS and isinstance(value, int):
        return human_size(value)
    if name == "cpus" and isinstance(value, (int, float)):
        return f"{value:g}"
    if name in COMMAND_FIELDS and _words(value) is not None:
        return shlex.join(value)  # type: ignore[arg-type]
    return None


def text(name: str, value: object, full: bool = False) -> str:
    """One line per value (file contents are summarised by line count and hash unless `full`)."""
    scalar = _scalar(name, value)
    if scalar is not None:
        return scalar
    if isinstance(value, str) and "\n" in value and not full:
        return f"<{value.count(chr(10))} lines, sha256 {hashlib.sha256(value.encode()).hexdigest()[:8]}>"
    return json.dumps(value, sort_keys=True)


def clip(line: str, full: bool = False) -> str:
    return escape(line if full or len(line) <= LONG else line[: LONG - 3] + "...")


def value(name: str, v: object, full: bool = False) -> str:
    return clip(text(name, v, full), full)


def _words(v: object) -> list[str] | None:
    return v if isinstance(v, list) and all(isinstance(w, str) for w in v) else None


def _changed_words(old: list[str], new: list[str]) -> tuple[str, str] | None:
    """The words of a command line that differ, each with the flag before it: `-m 100` -> `-m 150`."""
    before: list[str] = []
    after: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        shared = old[i1 - 1] if i1 > 0 and j1 > 0 and old[i1 - 1] == new[j1 - 1] else ""
        flag = shared if shared.startswith("-") else None
        before += ([flag] if flag else []) + old[i1:i2]
        after += ([flag] if flag else []) + new[j1:j2]
    if not before and not after:
        return None
    return " ".join(before), " ".join(after)


def change(name: str, old: object, new: object, full: bool = False) -> str:
    """`old -> new`; for two command lines only the words that differ (`-m 100 -> -m 150`,
    `drops --stats-file`), unless `full`."""
    a, b = _words(old), _words(new)
    words = _changed_words(a, b) if not full and a is not None and b is not None else None
    if words is None:
        return f"{value(name, old, full)} -> {value(name, new, full)}"
    before, after = words
    if not after:
        return f"drops {clip(before)}"
    if not before:
        return f"adds {clip(after)}"
    return f"{clip(before)} -> {clip(after)}"


def per_node(name: str, first: object, other: object, full: bool = False) -> str:
    """How another node's value differs from the first's: only the words that differ in a command."""
    a, b = _words(first), _words(other)
    if not full and a is not None and b is not None:
        words = _changed_words(a, b)
        if words is not None:
            return clip(words[1]) if words[1] else f"without {clip(words[0])}"
    return value(name, other, full)


def content_diff(old: object, new: object) -> list[str] | None:
    """The lines of two file contents that differ, as a unified diff; None when either is not a file."""
    if not (isinstance(old, str) and isinstance(new, str) and "\n" in old + new):
        return None
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "observed", "desired", lineterm="", n=1)
    return [escape(line) for line in lines]
