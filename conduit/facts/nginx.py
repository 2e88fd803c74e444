"""nginx's own words, parsed: config text as statements, `nginx -V`'s configure arguments, a pid file.

Pure functions of text (conduit.drivers.nginx reads the files and runs nginx). The
statement reader also reads `nginx -T`'s dump, which is the config files one after another,
each after a `# configuration file ...:` comment.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Statement:
    depth: int  # 0 = main context
    words: tuple[str, ...]
    block: bool  # ends with '{' rather than ';'
    line: int  # 1-based line of the first word


def statements(text: str) -> list[Statement]:
    """nginx config text as statements with their nesting depth (comments and quotes understood)."""
    return _Reader(text).statements()


class _Reader:
    """One pass over nginx config text, a character at a time."""

    def __init__(self, text: str) -> None:
        self.text, self.n = text, len(text)
        self.out: list[Statement] = []
        self.words: list[str] = []
        self.word: list[str] = []
        self.depth, self.line, self.start = 0, 1, 0
        self.quote: str | None = None

    def statements(self) -> list[Statement]:
        i = 0
        while i < self.n:
            ch = self.text[i]
            if ch == "\n":
                self.line += 1
            i = self._quoted(ch, i) if self.quote else self._plain(ch, i)
        self.end_statement(False)
        return self.out

    def end_word(self) -> None:
        if self.word:
            self.words.append("".join(self.word))
            self.word = []

    def end_statement(self, block: bool) -> None:
        self.end_word()
        if self.words:
            self.out.append(Statement(self.depth, tuple(self.words), block, self.start))
        self.words = []

    def _quoted(self, ch: str, i: int) -> int:
        """Inside quotes; returns where to read next."""
        if ch == "\\" and i + 1 < self.n:
            self.word.append(self.text[i + 1])
            return i + 2
        if ch == self.quote:
            self.quote = None
        else:
            self.word.append(ch)
        return i + 1

    def _plain(self, ch: str, i: int) -> int:
        """Outside quotes; returns where to read next."""
        if ch == "#":
            newline = self.text.find("\n", i)
            return self.n if newline < 0 else newline
        if ch == "{" and self.word and self.word[-1] == "$":
            # ${name}: a variable, not a block
            close = self.text.find("}", i)
            close = self.n - 1 if close < 0 else close
            self.word.append(self.text[i : close + 1])
            return close + 1
        if ch in "\"'":
            self._first_char()
            self.quote = ch
            self.word.append("")  # an empty quoted string is still a word
        elif ch.isspace():
            self.end_word()
        elif ch in ";{}":
            self._punctuation(ch)
        else:
            self._first_char()
            self.word.append(ch)
        return i + 1

    def _first_char(self) -> None:
        if not self.words and not self.word:
            self.start = self.line

    def _punctuation(self, ch: str) -> None:
        self.end_statement(ch == "{")
        if ch == "{":
            self.depth += 1
        elif ch == "}":
            self.depth = max(0, self.depth - 1)


def include_pattern(conf_dir: str, pattern: str) -> str:
    """nginx resolves relative include paths against the directory of nginx.conf."""
    return pattern if pattern.startswith("/") else posixpath.join(conf_dir, pattern)


def stream_compiled_in(version_output: str) -> bool:
    """`nginx -V` lists --with-stream for a built-in module, --with-stream=dynamic for a loadable one."""
    return "--with-stream" in version_output.split()


def managed_listens(content: str) -> set[tuple[str, int]]:
    """(protocol, port) of the listen lines in a stream file."""
    found = set()
    for m in re.finditer(r"^\s*listen\s+(?:\S*:)?(\d+)((?:\s+[^;\s]+)*)\s*;", content, re.M):
        found.add(("udp" if "udp" in m.group(2).split() else "tcp", int(m.group(1))))
    return found


def pidfile_pid(text: str) -> int | None:
    """The process id a pid file names; None when it holds no positive number."""
    try:
        pid = int(text.strip())
    except ValueError:
        return None
    return pid if pid > 0 else None


def names_nginx(cmdline: bytes) -> bool:
    """Whether a /proc/<pid>/cmdline is nginx's (the master's reads `nginx: master process ...`)."""
    return b"nginx" in cmdline
