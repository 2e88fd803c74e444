"""The spec reference page: every field with its type, default and description, from the models."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from conduit.spec.load import _unwrap
from conduit.spec.spec import ClusterSpec
from conduit.spec.units import format_size, parse_size

PAGE = Path(__file__).resolve().parents[2] / "docs" / "spec-reference.md"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        if any(getattr(m, "func", None) is parse_size for m in args[1:]):
            return "size"
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return " or ".join(json.dumps(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if any(getattr(m, "func", None) is parse_size for m in field.metadata) and isinstance(field.default, int):
        return f"`{format_size(field.default)}`"
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{json.dumps(field.default)}`"


def _model_inside(annotation: object) -> tuple[type[BaseModel] | None, str]:
    """The model a field holds directly, in a dict (by index) or in a list, and the path suffix."""
    inner = _unwrap(annotation)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return inner, "."
    origin = typing.get_origin(inner)
    if origin in (dict, list):
        item = _unwrap(typing.get_args(inner)[-1])
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, ".<key>." if origin is dict else "[]."
    return None, ""


def reference_markdown() -> str:
    rows: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            path = prefix + name
            nested, suffix = _model_inside(field.annotation)
            direct = suffix == "."
            description = field.description or ((nested.__doc__ or "").strip().split("\n")[0] if nested else "")
            kind = nested.__name__ if direct else _type_name(field.annotation)
            if any(getattr(m, "func", None) is parse_size for m in field.metadata):
                kind = "size"
            rows.append(f"| `{path}` | {_cell(kind)} | {_default(field)} | {_cell(description)} |")
            if nested:
                walk(nested, path + suffix)

    walk(ClusterSpec, "")
    head = [
        "# Spec reference",
        "",
        "Generated from the models in `conduit/spec/spec.py` by `conduit schema --markdown`; a test",
        "fails when this page and the models drift. Omitted container settings are sized from the",
        "host (see `spec.host.profile`); `examples/cluster.yaml` shows them in use.",
        "",
        "| field | type | default | what it means |",
        "| --- | --- | --- | --- |",
    ]
    return "\n".join(head + rows) + "\n"
