"""A spec built from base files: `extends: [../base/node.yaml, ../base/eu.yaml]` at the top of a document.

The rules (README, "A fleet from one repository"):
- the bases are applied in the order listed, each resolved with its own `extends` first, then the
  document itself on top;
- mappings merge key by key, recursively; a list or a scalar replaces what the bases said;
- `null` removes the key, whatever the bases said (as in JSON Merge Patch, RFC 7386);
- a path is relative to the file that names it, never absolute, and never leaves the root
  directory (the repository) that the files are read from; a symlink that leaves it is refused;
- a cycle of `extends` is refused in one line that names it.

Every merged value keeps where it was written (file, line, column), so an error in a value a
base contributed points into that base.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from conduit.spec.textfile import Unreadable, read_text_file

KEY = "extends"
MAX_CHAIN = 16  # bases of bases of ...; real fleets use two or three
MAX_BASES = 32  # named by one file

Key = str | int
Where = tuple[str, int, int]  # file, line, column


@dataclass(frozen=True)
class Marked:
    """Where a value was written, and where each of its keys (or items) were."""

    where: Where
    kids: dict[Key, Marked] = field(default_factory=dict)


class ComposeError(Exception):
    """A problem with `extends` itself: file, line, column, field and message."""

    def __init__(self, where: Where, path: str, message: str):
        self.where, self.path, self.message = where, path, message
        super().__init__(f"{where[0]}:{where[1]}:{where[2]}: {path}: {message}")


class Source(Protocol):
    """Where files are read from: a directory on disk or a commit of a repository."""

    def name(self, rel: str) -> str:
        """How `rel` (a path relative to the root) is named in messages."""

    def read(self, rel: str) -> str:
        """The text of `rel`; raises ComposeError when it cannot be read or is not inside the root."""


# Parses YAML text into plain data and {data path: (line, column)} (conduit.spec.load.parse).
Parser = Callable[[str, str], tuple[object, dict[tuple[Key, ...], tuple[int, int]]]]


def marked(data: object, marks: dict[tuple[Key, ...], tuple[int, int]], name: str, path: tuple[Key, ...] = ()) -> Marked:
    """The mark tree of one parsed file."""
    line, col = marks.get(path, (1, 1))
    kids: dict[Key, Marked] = {}
    if isinstance(data, dict):
        kids = {k: marked(v, marks, name, path + (k,)) for k, v in data.items()}
    elif isinstance(data, list):
        kids = {i: marked(v, marks, name, path + (i,)) for i, v in enumerate(data)}
    return Marked((name, line, col), kids)


class Reset:
    """A mapping that replaces what the files before it said, rather than merging into it: what a
    mapping becomes when it follows a scalar, a list or a `null` in an earlier file. Patches hold
    it so that files compose the same way however they are grouped (a chain of `extends`, or one
    list)."""

    __slots__ = ("data",)

    def __init__(self, data: dict):
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reset) and other.data == self.data

    def __repr__(self) -> str:
        return f"Reset({self.data!r})"


def merge(base: object, base_marks: Marked | None, child: object, child_marks: Marked) -> tuple[object, Marked]:
    """The document `base` with `child` (a file, or files already composed by `then`) applied on
    top, with the marks of whichever file each value came from. Mappings merge key by key, lists
    and scalars replace, `null` removes the key."""
    if isinstance(child, Reset):
        return child.data, child_marks
    if not isinstance(child, dict):
        return child, child_marks
    if not isinstance(base, dict):
        base, base_marks = {}, None  # a mapping over a scalar or a list replaces it
    data = dict(base)
    kids = dict(base_marks.kids) if base_marks else {}
    for key, value in child.items():
        if value is None:
            data.pop(key, None)
            kids.pop(key, None)
        else:
            data[key], kids[key] = merge(data.get(key), kids.get(key), value, child_marks.kids[key])
    return data, Marked(child_marks.where, kids)


_ABSENT = object()


def then(first: object, first_marks: Marked | None, second: object, second_marks: Marked) -> tuple[object, Marked]:
    """One patch for `first` applied, then `second`: merge(x, then(p, q)) == merge(merge(x, p), q)."""
    if not isinstance(second, dict) or first is _ABSENT:
        return second, second_marks
    if isinstance(first, dict):
        data = dict(first)
        kids = dict(first_marks.kids) if first_marks else {}
        for key, value in second.items():
            if key in data:
                data[key], kids[key] = then(data[key], kids.get(key), value, second_marks.kids[key])
            else:
                data[key], kids[key] = value, second_marks.kids[key]
        return data, Marked(second_marks.where, kids)
    # A mapping after a scalar, a list or a null: it lands on what that left, and replaces the rest.
    base, marks = (first.data, first_marks) if isinstance(first, Reset) else ({}, None)
    done, done_marks = merge(base, marks, second, second_marks)
    return Reset(done), done_marks  # type: ignore[arg-type]


def flatten(marks: Marked, path: tuple[Key, ...] = (), out: dict | None = None) -> dict[tuple[Key, ...], Where]:
    """{data path: (file, line, column)} of a merged document."""
    out = {} if out is None else out
    out[path] = marks.where
    for key, kid in marks.kids.items():
        flatten(kid, path + (key,), out)
    return out


def inside(folder: str, ref: str) -> str | None:
    """`ref` (named in a file in `folder`) as a path relative to the root, or None when it leaves it."""
    joined = posixpath.normpath(posixpath.join(folder, ref))
    if joined == ".." or joined.startswith("../") or joined.startswith("/"):
        return None
    return joined


@dataclass(frozen=True)
class Layer:
    """A file resolved with its bases: the merged data (without `extends`) and its marks; or, as a
    patch, what it changes in the files it is applied on."""

    data: dict
    marks: Marked


class Composer:
    """Resolves files of one source; each file is read, parsed and composed with its bases once per Composer."""

    def __init__(self, source: Source, parse: Parser):
        self.source, self.parse = source, parse
        self.patches: dict[str, Layer] = {}
        self.documents: dict[str, Layer] = {}

    def resolve(self, rel: str, text: str | None = None) -> Layer:
        """The document `rel` describes: its bases applied in order, then itself on top. `text` is
        its content when the caller already has it."""
        if text is None and rel in self.documents:
            return self.documents[rel]
        patch = self.patch(rel, text)
        data, marks = merge({}, None, patch.data, patch.marks)
        layer = Layer(data, marks)  # type: ignore[arg-type]
        if text is None:
            self.documents[rel] = layer
        return layer

    def patch(self, rel: str, text: str | None = None, chain: tuple[str, ...] = ()) -> Layer:
        """`rel` with its bases, as one patch (nulls and Resets kept, to apply on top of other files)."""
        if rel in self.patches and text is None:
            return self.patches[rel]
        name = self.source.name(rel)
        data, flat = self.parse(self.source.read(rel) if text is None else text, name)
        marks = marked(data, flat, name)
        if not isinstance(data, dict):
            raise ComposeError((name, 1, 1), "", "expected a mapping")
        merged: object = _ABSENT
        merged_marks: Marked | None = None
        for base, where in self._bases(rel, data, marks):
            stack = chain + (rel,)
            if base in stack:
                cycle = " -> ".join(self.source.name(r) for r in stack[stack.index(base) :] + (base,))
                raise ComposeError(where, KEY, f"extends cycle: {cycle}; remove one of these extends")
            if len(chain) >= MAX_CHAIN:
                raise ComposeError(where, KEY, f"extends nest deeper than {MAX_CHAIN} files; flatten the bases")
            layer = self.patch(base, None, stack)
            merged, merged_marks = then(merged, merged_marks, layer.data, layer.marks)
        own = {k: v for k, v in data.items() if k != KEY}
        own_marks = Marked(marks.where, {k: v for k, v in marks.kids.items() if k != KEY})
        result, result_marks = then(merged, merged_marks, own, own_marks)
        layer = Layer(result, result_marks)  # type: ignore[arg-type]
        if text is None:
            self.patches[rel] = layer
        return layer

    def _bases(self, rel: str, data: dict, marks: Marked) -> list[tuple[str, Where]]:
        """The files `extends` names, as paths relative to the root, with where each is named."""
        if KEY not in data:
            return []
        value, at = data[KEY], marks.kids[KEY]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ComposeError(at.where, KEY, "must be a list of paths of base files (for example [../base/node.yaml])")
        if len(value) > MAX_BASES:
            raise ComposeError(at.where, KEY, f"names more than {MAX_BASES} files")
        folder = posixpath.dirname(rel)
        out = []
        for i, ref in enumerate(value):
            where = at.kids[i].where
            if ref.startswith("/") or "\\" in ref:
                raise ComposeError(where, f"{KEY}.{i}", f"{ref!r} is absolute; name the base relative to this file")
            target = inside(folder, ref)
            if target is None:
                raise ComposeError(where, f"{KEY}.{i}", f"{ref!r} leaves {self.source.name('.')}; bases must live inside it")
            out.append((target, where))
        return out


class Directory:
    """Files under a directory on disk; nothing read may resolve (through symlinks) outside it."""

    def __init__(self, root: Path, max_bytes: int, shown: str | None = None):
        self.root = Path(os.path.realpath(root))
        self.shown = str(root) if shown is None else shown
        self.max_bytes = max_bytes

    def name(self, rel: str) -> str:
        if rel == ".":
            return str(self.root)
        return posixpath.join(self.shown, rel) if self.shown not in ("", ".") else rel

    def read(self, rel: str) -> str:
        where = (self.name(rel), 1, 1)
        real = os.path.realpath(self.root / rel)
        if os.path.commonpath([real, str(self.root)]) != str(self.root):
            raise ComposeError(where, "", f"is a link to {real}, outside {self.name('.')}; bases must live inside it")
        try:
            return read_text_file(real, self.max_bytes)
        except Unreadable as exc:
            raise ComposeError(where, "", str(exc)) from None


def enclosing_repository(spec: Path) -> Path | None:
    """The nearest directory above the spec holding a fleet file or a git repository, if any."""
    start = Path(os.path.abspath(spec)).parent
    for folder in (start, *start.parents):
        if (folder / "fleet.yaml").is_file() or (folder / ".git").exists():
            return folder
    return None


def repository_root(spec: Path) -> Path:
    """The directory a lone spec's bases must live in: its enclosing repository, else the spec's own directory."""
    return enclosing_repository(spec) or Path(os.path.abspath(spec)).parent
