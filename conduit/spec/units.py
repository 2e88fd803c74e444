"""Value types shared by the spec models: byte sizes and the literal "auto"."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MAX_BYTES = 1 << 50  # 1 PiB: more than any host this runs on, and still exact as a float


def parse_size(value: object) -> int:
    """Bytes from an int or a string such as 384m, 384MiB or 4GB.

    Units are binary whatever the spelling, as Docker reads them (384m = 384 MiB).
    """
    if isinstance(value, bool):
        raise ValueError("must be a size such as 384MiB or 4GiB")
    if isinstance(value, int):
        return _bounded(value)
    if isinstance(value, str) and len(value) <= 40:
        match = _SIZE.match(value)
        if match:
            number, unit = match.groups()
            return _bounded(float(number) * _FACTORS[unit.lower()])
    raise ValueError("must be a size such as 384MiB or 4GiB")


def _bounded(value: float) -> int:
    if value < 0:
        raise ValueError("must not be negative")
    if value > MAX_BYTES:
        raise ValueError("must be at most 1PiB")
    return int(value)


def format_size(n: int) -> str:
    """The shortest exact binary spelling of n bytes (402653184 -> 384MiB)."""
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


ByteCount = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]([iI]?[bB])?)?\s*$"},
            ],
            "description": "bytes, or a size with a binary unit: 384m, 384MiB, 4GiB",
        }
    ),
]

Auto = Literal["auto"]
