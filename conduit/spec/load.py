"""YAML to a validated spec, with errors that name the file, line, column and field.

Pydantic's error locations carry no line numbers, so the YAML is composed into nodes
first and every data path is mapped to the mark of its node.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from pathlib import Path as FsPath

import yaml
from pydantic import BaseModel, ValidationError

from conduit.spec.advisor import Capacity, advise
from conduit.spec.checks import Issue, check
from conduit.errors import PolicyError, Problem, SpecError, located
from conduit.spec.compose import KEY as EXTENDS, ComposeError, Composer, Directory, Layer, enclosing_repository, flatten, repository_root
from conduit.spec.policy import HostPolicy, load_policy
from conduit.spec.policy_file import policy_path
from conduit.spec.profiles import HostFacts
from conduit.spec.resolve import host_facts, resolve
from conduit.spec.spec import ClusterSpec
from conduit.spec.textfile import Unreadable, read_text_file
from conduit.spec.trust import trust_checks
from conduit.spec.units import NEEDS_UNIT

MAX_BYTES = 1 << 20  # a real spec is a few KiB
MAX_NODES = 20_000  # counted after alias expansion: stops "billion laughs"
MAX_DEPTH = 40
MAX_INT = (1 << 63) - 1
# libyaml's parser where PyYAML has it: the same nodes and marks, ten times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # what the kernel and Docker take at most

Path = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]+")


class _Marks:
    """Line and column of every data path, from the key (mapping) or item (sequence) node."""

    def __init__(self) -> None:
        self.marks: dict[Path, tuple[int, int]] = {(): (1, 1)}
        self.files: dict[Path, str] = {}  # a composed spec's: the file each value came from

    def add(self, path: Path, mark: yaml.Mark) -> None:
        self.marks.setdefault(path, (mark.line + 1, mark.column + 1))

    def find(self, path: Path) -> tuple[int, int]:
        while path not in self.marks:
            path = path[:-1]
        return self.marks[path]

    def where(self, path: Path) -> tuple[str | None, int, int]:
        while path not in self.marks:
            path = path[:-1]
        return (self.files.get(path), *self.marks[path])

    @classmethod
    def composed(cls, flat: dict[Path, tuple[str, int, int]]) -> _Marks:
        marks = cls()
        marks.marks = {path: (line, col) for path, (_, line, col) in flat.items()}
        marks.files = {path: name for path, (name, _, _) in flat.items()}
        return marks


class _Builder:
    """Turns composed nodes into plain data, refusing duplicate keys and runaway documents."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.constructor = yaml.SafeLoader("")
        self.marks = _Marks()
        self.nodes = 0

    def fail(self, mark: yaml.Mark | None, message: str, path: Path = ()) -> typing.NoReturn:
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError(self.filename, [Problem(line, col, dotted(path), message)])

    def build(self, node: yaml.Node, path: Path = (), depth: int = 0) -> object:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.fail(node.start_mark, f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
        if depth > MAX_DEPTH:
            self.fail(node.start_mark, f"document is nested deeper than {MAX_DEPTH} levels", path)
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)
            out: dict[object, object] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.fail(key_node.start_mark, "keys must be plain scalars", path)
                key = self.constructor.construct_object(key_node)
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    key = str(key_node.value)
                if key in out:
                    self.fail(key_node.start_mark, f"duplicate key {key!r}", path + (key,))
                self.marks.add(path + (key,), key_node.start_mark)
                out[key] = self.build(value_node, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.marks.add(path + (i,), item.start_mark)
                items.append(self.build(item, path + (i,), depth + 1))
            return items
        return self.scalar(node, path)

    def scalar(self, node: yaml.Node, path: Path) -> object:
        try:
            value = self.constructor.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            self.fail(node.start_mark, str(exc.problem), path)
        except ValueError:  # an integer of thousands of digits
            self.fail(node.start_mark, "number is out of range", path)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            self.fail(node.start_mark, "number is out of range", path)
        return value


def dotted(path: Path) -> str:
    """spec.containers.count; odd keys are quoted so the path stays on one line."""
    return ".".join(p if isinstance(p, str) and _PLAIN_KEY.fullmatch(p) else repr(p) if isinstance(p, str) else str(p) for p in path)


def parse(text: str, filename: str) -> tuple[object, _Marks]:
    """Plain data and its marks from YAML text."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise SpecError(filename, [Problem(1, 1, "", f"file is larger than {MAX_BYTES // 1024} KiB; not a spec")])
    builder = _Builder(filename)
    try:
        documents = list(yaml.compose_all(text, Loader=_LOADER))
    except RecursionError:
        builder.fail(None, f"document is nested deeper than {MAX_DEPTH} levels")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        builder.fail(mark, f"invalid YAML: {exc.problem or exc.context}")
    except yaml.reader.ReaderError as exc:  # characters YAML does not allow
        builder.fail(None, f"invalid YAML: character #x{exc.character:04x} at offset {exc.position} is not allowed")
    except yaml.YAMLError as exc:
        builder.fail(None, f"invalid YAML: {exc}")
    documents = [d for d in documents if d is not None]
    if not documents:
        builder.fail(None, "the file is empty; expected a ConduitCluster document")
    if len(documents) > 1:
        builder.fail(documents[1].start_mark, "expected one document, found several")
    data = builder.build(documents[0])
    return data, builder.marks


# ------------------------------------------------------------------ pydantic errors


def _model_at(path: Path, root: type[BaseModel] = ClusterSpec) -> type[BaseModel] | None:
    """The model class that holds the fields at `path`, following dicts and lists."""
    current: object = root
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: object) -> object:
    """Model or container type inside Optional/Annotated/unions."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [_unwrap(a) for a in typing.get_args(annotation) if a is not type(None)]
        for member in members:
            if (isinstance(member, type) and issubclass(member, BaseModel)) or typing.get_origin(member) in (dict, list):
                return member
        return members[0] if members else annotation
    return annotation


def _data_path(loc: tuple, data: object) -> Path:
    """The part of a pydantic loc that names real data (drops union member tags)."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, dict) and isinstance(part, str) and part.isdigit() and int(part) in current:
            part = int(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        elif isinstance(current, dict) and i == len(loc) - 1:
            path.append(part)  # a missing field: name it
            break
        else:
            break
        path.append(part)
    return tuple(path)


def _message(error: dict) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        limit = next(iter(ctx.values()))
        return f"must be {op} {limit}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', '')}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("string_type",):
        return "must be a string"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping"
    if kind == "list_type":
        return "must be a list"
    if kind == "string_pattern_mismatch":
        return f"does not match the pattern {ctx.get('pattern')}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message[:1].lower() + message[1:]


def _join(messages: list[str]) -> str:
    """Union members fail separately: 'must be a number' + "must be 'auto'" -> one sentence."""
    if len(messages) > 1 and all(m.startswith("must be ") for m in messages):
        return "must be " + " or ".join(m[len("must be ") :] for m in messages)
    kinds = [m[len("must be ") :] for m in messages if m.startswith("must be ")]
    if len(messages) == len(kinds) + 1 and kinds and messages[0] == NEEDS_UNIT:  # a size, or 'auto'
        return f"{NEEDS_UNIT}, or {' or '.join(kinds)}"
    return "; ".join(messages)


def model_problems(exc: ValidationError, data: object, marks: _Marks, root: type[BaseModel] = ClusterSpec) -> list[Problem]:
    """Pydantic's errors for the document `data`, a `root`, as located problems."""
    by_path: dict[Path, list[str]] = {}
    for error in exc.errors():
        loc = tuple(error["loc"])
        if error["type"] == "extra_forbidden":
            path = _data_path(loc, data)
            key = str(path[-1]) if path else str(loc[-1])
            model = _model_at(path[:-1], root)
            hint = ""
            if model is not None:
                close = difflib.get_close_matches(key, list(model.model_fields), n=1)
                if close:
                    hint = f" (did you mean {close[0]!r}?)"
            by_path.setdefault(path, []).append(f"unknown field{hint}")
            continue
        path = _data_path(loc, data)
        message = _message(error)
        if message not in by_path.setdefault(path, []):
            by_path[path].append(message)
    problems = []
    for path, messages in by_path.items():
        file, line, col = marks.where(path)
        problems.append(Problem(line, col, dotted(path), _join(messages), file))
    return sorted(problems, key=lambda p: (p.file or "", p.line, p.column))


def _issue_problems(issues: list[Issue], marks: _Marks) -> list[Problem]:
    problems = []
    for path, message in issues:
        file, line, col = marks.where(path)
        problems.append(Problem(line, col, dotted(path), message, file))
    return sorted(problems, key=lambda p: (p.file or "", p.line, p.column))


# ------------------------------------------------------------------ entry points


def load_text(
    text: str, filename: str, detected: HostFacts, policy: tuple[HostPolicy, str] | None = None, composer: Composer | None = None
) -> ClusterSpec:
    """Validate YAML text into a resolved spec, or raise SpecError (PolicyError when the host policy,
    by default the one conduit.spec.policy.load_policy finds, cannot be read). A document with
    `extends` is applied on top of its bases (conduit.spec.compose), read by `composer`, by default
    from the directory tree `filename` lives in."""
    policy = policy or _host_policy()
    data, marks = parse(text, filename)
    if isinstance(data, dict) and EXTENDS in data:
        data, marks = compose_text(text, filename, composer)
    return load_data(data, marks, filename, detected, policy)


def parse_flat(text: str, filename: str) -> tuple[object, dict[Path, tuple[int, int]]]:
    """parse, with the marks as a plain mapping (what conduit.spec.compose reads)."""
    data, marks = parse(text, filename)
    return data, marks.marks


def composer_for(path: str | FsPath) -> tuple[Composer, str]:
    """A Composer for the files around a lone spec (conduit.spec.compose.repository_root), and the
    spec's path relative to that root."""
    root = repository_root(FsPath(path))
    rel = FsPath(os.path.abspath(path)).relative_to(root).as_posix()
    shown = os.path.relpath(root) if not FsPath(path).is_absolute() else str(root)
    return Composer(Directory(root, MAX_BYTES, shown), parse_flat), rel


def compose_text(text: str, filename: str, composer: Composer | None = None, rel: str | None = None) -> tuple[dict, _Marks]:
    """The document `text` (the file `rel` of the composer's source) merged on top of its bases."""
    if composer is None:
        if not FsPath(filename).is_file():
            raise SpecError(filename, [Problem(1, 1, EXTENDS, "a spec that extends base files is read from a file next to them")])
        composer, rel = composer_for(filename)
    try:
        layer = composer.resolve(rel or filename, text)
    except ComposeError as exc:
        raise compose_problem(exc) from None
    return layer.data, _Marks.composed(flatten(layer.marks))


def load_layer(layer: Layer, filename: str, detected: HostFacts, policy: tuple[HostPolicy, str] | None = None) -> ClusterSpec:
    """Validate a document merged by conduit.spec.compose; problems name the file each value came from."""
    return load_data(layer.data, _Marks.composed(flatten(layer.marks)), filename, detected, policy)


def compose_problem(exc: ComposeError) -> SpecError:
    name, line, col = exc.where
    return SpecError(name, [Problem(line, col, exc.path, exc.message)])


def load_data(data: object, marks: _Marks, filename: str, detected: HostFacts, policy: tuple[HostPolicy, str] | None = None) -> ClusterSpec:
    """Validate parsed (or composed) data into a resolved spec; see load_text."""
    policy = policy or _host_policy()
    if not isinstance(data, dict):
        raise SpecError(filename, [Problem(1, 1, "", "expected a mapping with apiVersion, kind, metadata and spec")])
    try:
        spec = ClusterSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(filename, model_problems(exc, data, marks)) from None
    facts = host_facts(spec.spec.host, detected)
    resolved = resolve(spec, facts)
    advice = advise(spec, resolved)
    issues = check(resolved, facts) + advice.refusals + trust_checks(resolved, *policy)
    if issues:
        raise SpecError(filename, _issue_problems(issues, marks))
    resolved._capacity = Capacity(advice.summary, located(filename, _issue_problems(advice.warnings, marks)), advice.host_sized)
    return resolved


def _host_policy() -> tuple[HostPolicy, str]:
    try:
        return load_policy()
    except PolicyError as exc:
        raise SpecError(policy_path(), [Problem(1, 1, "", str(exc))]) from None


def read_spec_text(path: str | FsPath) -> str:
    """A spec file's text, or SpecError when it cannot be read, is too large or is not UTF-8.

    Read as its bases are (conduit.spec.compose.Directory): a spec in a repository, which others
    may push to, is never a link out of it (what it points at would come back in the errors), and
    only a regular file is read, no more of it than a spec may be."""
    name = str(path)
    outside = _link_out_of_repository(FsPath(path))
    if outside is not None:
        raise SpecError(name, [Problem(1, 1, "", f"is a link to {outside[0]}, outside {outside[1]}; a spec must live inside it")])
    try:
        return read_text_file(path, MAX_BYTES)
    except Unreadable as exc:
        raise SpecError(name, [Problem(1, 1, "", str(exc))]) from None


def _link_out_of_repository(path: FsPath) -> tuple[str, FsPath] | None:
    """(where the spec leads, its repository) when it sits in one and resolves outside it; a spec in
    no repository is root's own file, wherever root's links lead."""
    repository = enclosing_repository(path)
    if repository is None:
        return None
    real, top = os.path.realpath(path), os.path.realpath(repository)
    return None if os.path.commonpath([real, top]) == top else (real, repository)


def spec_text(path: str | FsPath) -> str:
    """The text a generation (or a saved plan) records for a spec file: as written, or, for one that
    extends base files, the merged document, so that a rollback never reads bases changed since."""
    return recorded_text(read_spec_text(path), str(path))


def recorded_text(text: str, filename: str) -> str:
    """spec_text for text already read from `filename`."""
    data, _ = parse(text, filename)
    if not (isinstance(data, dict) and EXTENDS in data):
        return text
    merged, _ = compose_text(text, filename)
    return f"# {filename} with the files it extends merged in\n" + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True)


def load_file(path: str | FsPath, detected: HostFacts, policy: tuple[HostPolicy, str] | None = None) -> ClusterSpec:
    return load_text(read_spec_text(path), str(path), detected, policy)
