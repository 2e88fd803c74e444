"""The one place a plan reads the host: `observe(spec, host, intent)`, then the pure
`conduit.engine.planning.plan`. Read here, once: the drivers (sysctl, nginx, Docker, the
tracker), the image (its facts from the cache, or asked of an image on the host), the
registry's answer for the tag (a new digest is not pulled here: the plan pulls and asks it as steps), the holds and the kernel's recorded refusals. Nothing is
written to the state: what was learned travels in `Observed.learned`, and the apply records it.
"""

from __future__ import annotations

from pathlib import Path

from conduit.drivers.docker import CountingClient
from conduit.drivers.observe import HostAccess, host_runtime, observe_host
from conduit.engine.images import image_facts, reader
from conduit.engine.intent import Apply, Destroy, Intent, Rollback, Update
from conduit.engine.planning import Observed, plan
from conduit.engine.settle import Choice, ImageSeen, Learned, settle
from conduit.engine.updates import UpdateRequest, choose_image
from conduit.plan.planner import Plan
from conduit.render.sysctl import sysctl_keys
from conduit.spec.spec import ClusterSpec
from conduit.state.db import Database, StateError
from conduit.state.holds import Holds
from conduit.state.images import Images
from conduit.state.kernel import KernelAnswers


def image_request(intent: Intent) -> UpdateRequest:
    """How `intent` treats a new image behind the spec's tag."""
    if isinstance(intent, Apply):
        return UpdateRequest(registry=intent.registry, take=intent.take)
    if isinstance(intent, Update):
        return UpdateRequest(take=True)
    if isinstance(intent, Rollback):
        return UpdateRequest(registry="never", take=False, pin=intent.image_id)
    if isinstance(intent, Destroy):
        return UpdateRequest(registry="never", take=False)
    return UpdateRequest()  # ApplySaved: planned again as it was made


def observe(spec: ClusterSpec, host: HostAccess, intent: Intent, listed: list[dict] | None = None, kept: dict | None = None) -> Observed:
    """What `intent`'s plan needs of the host, read once. Writes nothing. `listed`: Docker's list of
    every container, when the caller asked it already (status: one list for its rows and the plan);
    `kept`: status's kept image and volume answers, read instead of asking and filled with those
    asked (conduit.drivers.docker.recalled). A plan or an apply passes neither: it reads fresh."""
    client = host.docker(kept)
    images, learned = reader(host.state_dir), Learned()
    seen = observe_image(spec, client, images, image_request(intent), learned)
    settled = settle(spec, seen)
    obs = observe_host(settled.spec, host, client, sysctl_keys(settled.spec), listed)
    holds = Holds(host.state_dir).current()
    return Observed(obs, seen, frozenset(n for n, h in holds.items() if h.cpus is None), {n: h.cpus for n, h in holds.items() if h.cpus is not None},
                    recorded_refusals(host.state_dir), learned, client.calls if client else 0, runtime=host_runtime(host), settled=settled)  # fmt: skip


def observe_image(spec: ClusterSpec, client: CountingClient | None, images: Images | None, request: UpdateRequest, learned: Learned) -> ImageSeen:
    """Which image the nodes should run (conduit.engine.updates) and what it speaks."""
    if client is None:
        return ImageSeen(Choice(spec.spec.containers.image))
    version_of = lambda ref, attrs: getattr(image_facts(client, ref, images, learned, attrs), "version", None)  # noqa: E731
    choice = choose_image(spec, client, images, request, version_of, learned)
    found = None if choice.pull else image_facts(client, choice.ref, images, learned, choice.attrs)
    said = {}
    if choice.update is not None:
        for side in ("old", "new"):  # what each says it is (asked once, then cached by ID); a new one not pulled is not asked
            image_id = getattr(choice.update, f"{side}_id")
            present = side == "old" or choice.update.pulled
            said[side] = facts = image_facts(client, image_id, images, learned) if image_id and present else None
            if facts is not None and facts.known:
                setattr(choice.update, f"{side}_version", facts.describe())
    return ImageSeen(choice, found, docker_asked=True, running=said.get("old") if choice.pull else None)


def recorded_refusals(state_dir: Path) -> dict[str, tuple[str, str]]:
    """The sysctl writes the kernel refused at earlier applies (none when the state cannot be read)."""
    try:
        db = Database.reader(state_dir)
        return KernelAnswers(db).refused() if db else {}
    except StateError:
        return {}


def plan_on_host(intent: Intent, spec: ClusterSpec, host: HostAccess, listed: list[dict] | None = None,
                 kept: dict | None = None) -> tuple[Plan, Observed]:  # fmt: skip
    """The one way to plan for a host: observe it once for `intent`, then plan (pure). Raises
    HostMoved for an ApplySaved the host no longer matches. `listed`, `kept`: as for observe."""
    seen = observe(spec, host, intent, listed, kept)
    return plan(intent, spec, seen), seen

