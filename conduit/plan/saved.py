"""A plan saved by `conduit plan --out`: the plan as JSON, the spec it was made from, and the
fingerprint of the host it was made against; `conduit apply --plan` applies exactly it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from conduit.plan.planner import Plan


class NotASavedPlan(Exception):
    """The file cannot be applied as a saved plan; the message is one line, `code` the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def spec_fields(file: str, text: str, offline: bool) -> dict:
    """What a saved plan keeps of the spec it was made from."""
    return {
        "spec_file": str(Path(file).resolve()),
        "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "spec_text": text,
        "offline": offline,
    }


def plan_data(plan: Plan, extra: dict | None = None) -> dict:
    return {**plan.to_json(), **(extra or {})}


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def read_saved(plan_file: str) -> dict:
    """The saved plan in `plan_file`; refused unless it was saved against a host (not --offline)."""
    try:
        saved = json.loads(Path(plan_file).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotASavedPlan(f"{plan_file}: not a saved plan ({exc})", 2) from None
    if not isinstance(saved, dict) or "spec_text" not in saved or saved.get("offline"):
        raise NotASavedPlan(f"{plan_file} is not a saved plan of this host (plan --out without --offline)")
    return saved
