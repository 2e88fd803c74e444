"""Value types shared by the spec models: byte sizes and the literal "auto"."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

# A number and a unit: k, m, g, t (binary, optionally followed by B or iB), or B alone for bytes.
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(b))\s*$", re.IGNORECASE)
_BARE = re.compile(r"^\s*\d+(?:\.\d+)?\s*$")
_FACTORS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MAX_BYTES = 1 << 50  # 1 PiB: more than any host this runs on, and still exact as a float
NEEDS_UNIT = "give a unit, e.g. 512MiB or 2GiB"


def parse_size(value: object) -> int:
    """Bytes from a size with its unit: 384m, 384MiB, 1.5G, 4GB, 65536B.

    Units are binary whatever the spelling, as Docker reads them (384m = 384 MiB). A bare
    number is refused: `memory: 512` would be 512 bytes, which no container can run in.
    """
    if isinstance(value, bool):
        raise ValueError("must be a size such as 384MiB or 4GiB")
    if isinstance(value, (int, float)) or (isinstance(value, str) and _BARE.match(value)):
        raise ValueError(NEEDS_UNIT)
    return _parse(value)


def parse_docker_size(value: str) -> int:
    """Bytes from a size as `docker run --memory` reads it: a bare number is bytes."""
    return _parse(value + "b" if _BARE.match(value) else value)


def _docker_size_text(value: str) -> str:
    parse_docker_size(value)  # in bounds, or the field's error
    return value


# A size as Docker and git's limits read it (15m, 1g), kept as written and checked when the model is
# validated: a size past 1 PiB is the field's one-line error, never an exception later.
DockerSize = Annotated[str, AfterValidator(_docker_size_text)]


def _parse(value: object) -> int:
    if isinstance(value, str) and len(value) <= 40:
        match = _SIZE.match(value)
        if match:
            number, unit, _bytes = match.groups()
            return _bounded(float(number) * _FACTORS[(unit or "").lower()])
    raise ValueError("must be a size such as 384MiB or 4GiB")


def _bounded(value: float) -> int:
    if value < 0:
        raise ValueError("must not be negative")
    if value > MAX_BYTES:
        raise ValueError("must be at most 1PiB")
    return int(value)


_UNITS = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def format_size(n: int) -> str:
    """The shortest exact binary spelling of n bytes (402653184 -> 384MiB, 1000 -> 1000B)."""
    for unit, factor in _UNITS:
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


def human_size(n: int, up: bool = False) -> str:
    """n bytes for a person to read, at most three significant digits: 1.5 GiB, 384 MiB, 23.5 GiB.

    Rounded down, so that a size a message suggests as a ceiling still fits; `up` rounds up, for a
    floor. The result parses back with parse_size."""
    unit, factor = next(((u, f) for u, f in _UNITS if n >= f), ("B", 1))
    digits = 2 if n < 10 * factor else 1 if n < 100 * factor else 0
    scaled = Fraction(n * 10**digits, factor)  # exact: no float rounds 1.15 GiB down to 1.14
    whole = math.ceil(scaled) if up else math.floor(scaled)
    return f"{whole / 10**digits:g} {unit}"


ByteCount = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]([iI]?[bB])?|[bB])\s*$",
            "description": "a size with its binary unit: 384m, 384MiB, 1.5GiB, 4G (a bare number is refused)",
        }
    ),
]

Auto = Literal["auto"]
