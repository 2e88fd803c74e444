"""What a plan is for: the typed intents every door (CLI, watch, the agent, the bot) asks with.
conduit.engine.observe reads the host for one, conduit.engine.planning plans it (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from conduit.plan.planner import Plan
from conduit.spec.resources import Resource


@dataclass(frozen=True)
class Apply:
    """Make the host match the spec. `registry`: ask it now, when a check is `due`
    (spec.updates.check_every_minutes, watch) or `never`; `take`: a new image behind the tag is
    taken (True), shown only (False), or as spec.updates.policy says (None)."""

    registry: str = "now"
    take: bool | None = None


@dataclass(frozen=True)
class Update:
    """`conduit update`: ask the registry now and take a new image behind the tag, canaries first."""


@dataclass(frozen=True)
class ApplySaved:
    """Exactly this saved plan, once the host is seen as it was when it was made."""

    plan: Plan


@dataclass(frozen=True)
class Rollback:
    """Back to `generation`'s spec with the image its nodes ran (`image_id`), no registry asked.
    With no generation: put back `before`, what the host had before a first apply."""

    generation: int | None
    image_id: str | None = None
    before: tuple[Resource, ...] = ()


@dataclass(frozen=True)
class Destroy:
    """Remove what is observed of the cluster; `purge_data`: its data volumes (and keys) too."""

    purge_data: bool = False


Intent = Apply | Update | ApplySaved | Rollback | Destroy
