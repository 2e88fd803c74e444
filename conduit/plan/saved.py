"""A plan saved by `conduit plan --out`: the plan as JSON, the spec it was made from, the
fingerprint of the host it was made against, and a digest of all of it; `conduit apply --plan`
applies exactly its steps, and refuses a file whose content no longer matches its digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from conduit.errors import NotASavedPlan
from conduit.plan.planner import PLAN_FORMAT, Plan, plan_from_json

SPEC_FIELDS = ("spec_file", "spec_sha256", "spec_text", "offline")
PLAN_FIELDS = ("format_version", "cluster", "fingerprint", "summary", "steps", "problems", "warnings", "foreign", "target")
REQUIRED = (*PLAN_FIELDS, *SPEC_FIELDS, "digest")


@dataclass
class SavedPlan:
    """A saved plan that passed every check: the plan to run and the spec it was made from."""

    plan: Plan
    spec_text: str
    spec_file: str


def spec_fields(file: str, text: str, offline: bool) -> dict:
    """What a saved plan keeps of the spec it was made from."""
    return {
        "spec_file": str(Path(file).resolve()),
        "spec_sha256": _sha256(text),
        "spec_text": text,
        "offline": offline,
    }


def plan_data(plan: Plan, extra: dict | None = None) -> dict:
    """The plan as JSON; with the spec's fields (`extra`) it is a saved plan, sealed with its digest."""
    data = {**plan.to_json(), **(extra or {})}
    return sealed(data) if extra else data


def digest_of(data: dict) -> str:
    """sha256 of the canonical JSON of everything in `data` but its digest."""
    rest = {k: v for k, v in data.items() if k != "digest"}
    return _sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")))


def sealed(data: dict) -> dict:
    return {**data, "digest": digest_of(data)}


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return data


def _load(text: str, plan_file: str) -> dict:
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise NotASavedPlan(f"{plan_file}: not a saved plan (not JSON: {exc})", 2) from None
    if not isinstance(data, dict):
        raise NotASavedPlan(f"{plan_file}: not a saved plan (a JSON {type(data).__name__}, not an object)", 2)
    return data


def _check(plan_file: str, data: dict) -> None:
    """Exit 2 unless `data` is a whole saved plan exactly as `conduit plan --out` wrote it."""
    missing = [name for name in REQUIRED if name not in data]
    if missing:
        raise NotASavedPlan(f"{plan_file}: not a saved plan (it lacks {', '.join(missing)}); make a new one with conduit plan --out", 2)
    if data["format_version"] != PLAN_FORMAT:
        raise NotASavedPlan(f"{plan_file}: format_version {data['format_version']!r}, this conduit reads {PLAN_FORMAT}; make a new plan", 2)
    if data["digest"] != digest_of(data):
        raise NotASavedPlan(f"{plan_file}: its digest does not match its content: the file was changed after conduit plan --out wrote it", 2)
    text = data["spec_text"]
    if not isinstance(text, str) or data["spec_sha256"] != _sha256(text):
        raise NotASavedPlan(f"{plan_file}: its spec_sha256 does not match its spec_text", 2)
    if not isinstance(data["spec_file"], str) or not isinstance(data["offline"], bool):
        raise NotASavedPlan(f"{plan_file}: not a saved plan (spec_file is not a string or offline not true or false)", 2)


def read_saved(plan_file: str) -> SavedPlan:
    """The saved plan in `plan_file` (see parse_saved)."""
    try:
        text = Path(plan_file).read_text()
    except OSError as exc:
        raise NotASavedPlan(f"{plan_file}: cannot read: {exc.strerror}", 2) from None
    except UnicodeDecodeError as exc:
        raise NotASavedPlan(f"{plan_file}: not a saved plan (not UTF-8 text: {exc.reason})", 2) from None
    return parse_saved(text, plan_file)


def parse_saved(text: str, plan_file: str) -> SavedPlan:
    """The saved plan in `text`, read from `plan_file`. Refused (exit code 2) unless it is whole and
    unchanged since `conduit plan --out` wrote it; refused (1) when it was made --offline, not
    against a host."""
    data = _load(text, plan_file)
    _check(plan_file, data)
    if data["offline"]:
        raise NotASavedPlan(f"{plan_file} is not a saved plan of this host (plan --out without --offline)")
    try:
        plan = plan_from_json(data)
    except ValueError as exc:
        raise NotASavedPlan(f"{plan_file}: not a saved plan ({exc})", 2) from None
    if plan.target is None:
        raise NotASavedPlan(f"{plan_file}: not a saved plan (it has no target to run its steps against); make a new one with conduit plan --out", 2)
    return SavedPlan(plan, data["spec_text"], data["spec_file"])
