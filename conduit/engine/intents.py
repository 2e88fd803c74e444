"""What a door may ask for, each built into the one Request that reconcile runs: apply a spec,
apply a saved plan, roll back to a generation, take an update. The CLI, watch, the agent and the
bot build their requests here from the typed intents (conduit.engine.intent), so that a rollback
is the same rollback whichever door asked for it (back to the image the generation ran, by ID,
whatever its tag means now)."""

from __future__ import annotations

from dataclasses import dataclass

from conduit.drivers.observe import HostAccess
from conduit.engine.apply import Progress
from conduit.engine.intent import Apply, ApplySaved, Intent, Rollback, Update
from conduit.engine.reconcile import Request
from conduit.engine.updates import generation_image
from conduit.plan.saved import SavedPlan
from conduit.spec.load import load_text
from conduit.spec.profiles import HostFacts
from conduit.spec.spec import ClusterSpec
from conduit.state.history import Generation, History
from conduit.state.images import Images


@dataclass(frozen=True)
class Door:
    """Who asks and where its lines go: what a caller adds to any intent. A door that shows the
    plan or asks before going on does so itself, between conduit.engine.reconcile.reconciling's
    plan and its run."""

    host: HostAccess
    facts: HostFacts
    command: str  # what the apply lock says holds it
    report: Progress
    wait: bool = True
    on_wait: Progress | None = None
    allow_new_identity: bool = False  # the host's own flag, never a spec's


def request(door: Door, intent: Intent, spec: ClusterSpec, text: str, path: str | None, git=None) -> Request:
    """The Request that reconciles `spec` for `intent`, as `door` asks it."""
    return Request(spec, text, path, door.host, door.facts, door.command, door.report, intent=intent, wait=door.wait,
                   on_wait=door.on_wait, git=git, allow_new_identity=door.allow_new_identity)  # fmt: skip


def apply_spec(door: Door, spec: ClusterSpec, text: str, path: str | None, intent: Apply = Apply(),
               git: tuple[str | None, bool | None] | None = None) -> Request:  # fmt: skip
    """Make the host match `spec`; `intent` says how a new image behind the tag is treated (default: as spec.updates says)."""
    return request(door, intent, spec, text, path, git)


def take_update(door: Door, spec: ClusterSpec, text: str, path: str | None) -> Request:
    """`conduit update`: ask the registry now and move the nodes to a new image behind the tag, canary first."""
    return request(door, Update(), spec, text, path)


def apply_saved(door: Door, saved: SavedPlan) -> Request:
    """Exactly the saved plan, once the host is seen as it was when it was made. Raises SpecError."""
    spec = load_text(saved.spec_text, saved.spec_file, door.facts)
    return request(door, ApplySaved(saved.plan), spec, saved.spec_text, saved.spec_file)


class NoRollback(Exception):
    """Why no door rolls back there, in one line; `missing`: there is no such generation at all."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing


def rollback_target(history: History, generation: int | None, cluster: str | None) -> Generation:
    """The generation a rollback goes to, by the one rule every door keeps: `generation`, or by default
    the good one of `cluster` before its current one (after a destroy, the last one it ran). Only a
    generation that succeeded, and of `cluster` (None: any), ran its spec whole on the host. Raises NoRollback."""
    target = history.generation(generation) if generation is not None else history.good_before_current(cluster)
    if target is None:
        raise NoRollback(f"no generation {generation}; `conduit history` lists them" if generation is not None
                         else "no good generation before the current one to roll back to; `conduit history` lists them", missing=True)  # fmt: skip
    if cluster is not None and target.cluster not in (None, cluster):
        raise NoRollback(f"generation {target.id} is of cluster {target.cluster}, not {cluster}; `conduit history` lists which generation is whose")
    if target.outcome != "succeeded":
        raise NoRollback(f"generation {target.id} {target.outcome.replace('_', ' ')}: roll back to one that succeeded (`conduit history` lists them)")
    return target


def roll_back(door: Door, images: Images, target: Generation) -> Request:
    """Generation `target`'s spec, with the image its nodes ran, by ID; no registry asked. Raises SpecError."""
    spec = load_text(target.spec_text, f"generation {target.id}", door.facts)
    return request(door, Rollback(target.id, generation_image(images, target.id)), spec, target.spec_text, target.spec_path)


def undo_warning(spec_path: str | None, gen: int) -> str:
    """A rollback is undone by the next apply of the spec file, and by a watch of it (`conduit watch`,
    `conduit serve --watch`) at its next reconcile."""
    where = f"the spec file {spec_path}" if spec_path else "the spec file"
    return (f"{where} (and its watch, if one runs) will undo this rollback at the next apply; "
            f"to keep it, put generation {gen}'s spec into the file (`conduit history --spec {gen}` prints it) or stop the watch")


def undo_by_repository(url: str, gen: int) -> str:
    """A rollback on a host that follows a repository is undone at the follower's next heal."""
    return (f"this host follows {url}, whose spec its watch applies again at the next interval, undoing this rollback; "
            f"to keep it, commit generation {gen}'s spec there (`conduit history --spec {gen}` prints it)")
