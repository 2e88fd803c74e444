"""Each container's inspect answer for any number of containers, and status's drift check's
image and volume answers, Docker asked again only about those its events say changed.

A container's restart count, start and finish times, exit code, limits and log file are in
its inspect answer, not in the labelled list; asking for it is one call per container. So the
answers are kept (trimmed to what status reads) in a file in the state directory, with an
*anchor*: the newest Docker event seen when they were asked. The next look makes one events
call for everything since the anchor, unfiltered, and re-inspects only:
- a container that has any event since (start, die, update, kill, exec …: whatever it was, the
  answer may have moved; a restart count only changes with a die, a start time with a start);
- a container not kept yet, or whose list state differs from the kept one (belt and braces);
- every container when the anchor is not in the answer.

Why the anchor makes this exact: Docker keeps its last 256 events in memory (moby
daemon/events/events.go, eventsLimit), dropping the oldest first, and answers `since` from that
buffer scanning back from the newest. If the anchor is still in the answer, every event after
it is too (the buffer drops only from the front), so a container with no event since has the
answer it was inspected with. If it is not (more than 256 events since, or Docker
restarted and lost its buffer), no absence of events proves anything and each node is inspected
once more (a debug event says so). Counting events (starts after deaths) instead would miss
what the buffer dropped and guess Docker's restart policy rules; this reads its own count.

The first look, with nothing kept, inspects each container once; after that a steady cluster
costs the list, one events call and nothing per node.

The drift check's other reads of Docker (the image inspect answers and the volume list: `answers`,
conduit.drivers.docker.recalled) are kept beside them with the same anchor, for status only (a plan
reads everything fresh). They are dropped, and asked again, when an event since could have changed
them: any image event for the image answers (pull, tag, untag, delete, load, import, and a tag moved
onto another image is a `tag` event of that other image, so matching names would miss it), any volume
event but a mount or unmount for the volume list (create, destroy, prune); and all of them when the
anchor is gone. A tag moved without any event (an image built with BuildKit on Docker before 24, or
on the containerd image store before 28.1) stays unseen by status until the next image event;
`conduit plan` sees it.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from conduit.log import logger
from conduit.drivers.docker import IMAGE, VOLUMES, answers
from conduit.drivers.dockerapi import failures, refusals
from conduit.drivers.files import atomic_write, read_or_none
from conduit.errors import DockerError

EVENTS_LIMIT = 256  # Docker's in-memory buffer of past events (moby daemon/events/events.go)
KEPT_LIMIT = 8 << 20
WORKERS = 16
log = logger("conduit.inspected")
UNCHANGING = {"volume": {"mount", "unmount"}}  # events that leave what was answered as it was

Anchor = tuple[int, str]  # (timeNano, type/action/actor): one event Docker told


def trim(info: dict) -> dict:
    """The fields of an inspect answer that status and the node verdict read."""
    config, state, host = info.get("Config") or {}, info.get("State") or {}, info.get("HostConfig") or {}
    return {
        "Id": info.get("Id"),
        "Config": {k: config.get(k) for k in ("Entrypoint", "Cmd", "Tty")},
        "State": {k: state.get(k) for k in ("Status", "Running", "Restarting", "ExitCode", "StartedAt", "FinishedAt", "OOMKilled")},
        "RestartCount": info.get("RestartCount"),
        "HostConfig": {"NanoCpus": host.get("NanoCpus"), "Memory": host.get("Memory"), "LogConfig": {"Type": (host.get("LogConfig") or {}).get("Type")}},
        "LogPath": info.get("LogPath") or "",
        "Mounts": info.get("Mounts") or [],
    }


def anchor_of(event: dict) -> Anchor | None:
    """What identifies one event of Docker's answer; None for an entry that is not one."""
    if not isinstance(event, dict):
        return None
    stamp = event.get("timeNano")
    actor = event.get("Actor") if isinstance(event.get("Actor"), dict) else {}
    if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp <= 0:
        return None
    return stamp, f"{event.get('Type')}/{event.get('Action')}/{actor.get('ID')}"


def touched(events: list[dict]) -> set[str]:
    """The IDs of the containers these events are about."""
    out = set()
    for event in events:
        if isinstance(event, dict) and event.get("Type") == "container" and isinstance(event.get("Actor"), dict):
            actor = event["Actor"].get("ID")
            if isinstance(actor, str):
                out.add(actor)
    return out


def after_anchor(events: list[dict], anchor: Anchor | None) -> list[dict] | None:
    """The events after `anchor` (the last look saw it and those before it); None when the anchor is
    not in the answer, so that events since it may be lost."""
    if anchor is None:
        return None
    for i, event in enumerate(events):
        if anchor_of(event) == anchor:
            return events[i + 1 :]
    return None


def newest(events: list[dict]) -> Anchor | None:
    """The anchor for the next look: the answer's newest event (Docker answers oldest first)."""
    for event in reversed(events):
        found = anchor_of(event)
        if found is not None:
            return found
    return None


def _stamp(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def read_events(client, anchor: Anchor | None, until_ns: int) -> list[dict] | None:
    """Every event Docker still holds since the anchor (its whole buffer without one), in one
    call and unfiltered: a filter would hide the anchor among the events it drops. None when the
    daemon does not answer."""
    since = _stamp(anchor[0]) if anchor else "0"
    try:
        return list(client.api.events(since=since, until=_stamp(until_ns), decode=True))
    except (*failures(), ValueError):
        return None


@dataclass
class Kept:
    """What the last look kept: the anchor, each container's trimmed inspect answer by ID, and the
    drift check's answers ("image <ref>", "volumes": conduit.drivers.docker.recalled)."""

    anchor: Anchor | None = None
    infos: dict[str, dict] = field(default_factory=dict)
    answers: dict[str, object] = field(default_factory=dict)


def _anchor(value: object) -> Anchor | None:
    good = isinstance(value, list) and len(value) == 2 and isinstance(value[0], int) and isinstance(value[1], str)
    return (value[0], value[1]) if good else None


def load(path: Path | None) -> Kept:
    """The kept answers; nothing when the file is absent, too big or not what this module writes."""
    text = read_or_none(path) if path is not None else None
    if not text or len(text) > KEPT_LIMIT:
        return Kept()
    try:
        data = json.loads(text)
        infos, kept_answers = data.get("infos"), data.get("answers", {})
        if not isinstance(infos, dict) or not all(isinstance(v, dict) and v.get("Id") == k for k, v in infos.items()):
            return Kept()
        if not isinstance(kept_answers, dict) or not all(answer_fits(k, v) for k, v in kept_answers.items()):
            kept_answers = {}
        return Kept(_anchor(data.get("anchor")), infos, kept_answers)
    except (ValueError, AttributeError):
        return Kept()


def save(path: Path | None, kept: Kept) -> None:
    """Keep the answers for the next look (a look that cannot write them still answers)."""
    if path is None or not path.parent.is_dir():
        return
    try:
        atomic_write(path, json.dumps({"anchor": list(kept.anchor) if kept.anchor else None, "infos": kept.infos, "answers": kept.answers}))
    except OSError as exc:
        log.debug("inspected.not_kept", path=str(path), error=str(exc))


def inspect(client, container_id: str) -> dict | None:
    """One container's trimmed inspect answer; None when it is gone or Docker does not answer."""
    try:
        with answers(client):
            return trim(client.api.inspect_container(container_id))
    except (*refusals(), DockerError):
        return None


def stale(entries: dict[str, dict], kept: Kept, events: list[dict] | None) -> dict[str, str]:
    """{container ID: why it is asked again} for the listed containers (`entries`, by ID)."""
    since = after_anchor(events, kept.anchor) if events is not None else None
    if since is None:
        why = "no events answer" if events is None else "events since the last look may be lost (anchor gone)"
        return {cid: why for cid in entries}
    moved = touched(since)
    out = {}
    for cid, entry in entries.items():
        info = kept.infos.get(cid)
        if info is None:
            out[cid] = "not looked at yet"
        elif cid in moved:
            out[cid] = "it has events since the last look"
        elif (info.get("State") or {}).get("Status") != entry.get("State"):
            out[cid] = "its state moved"
    return out


def answer_fits(key: object, answer: object) -> bool:
    """Whether a kept drift-check answer is of the shape its Docker call gives."""
    if key == VOLUMES:
        return isinstance(answer, dict)
    return isinstance(key, str) and key.startswith(IMAGE) and (answer is None or isinstance(answer, dict))


def still_good(answers: dict[str, object], since: list[dict] | None) -> dict[str, object]:
    """The kept drift-check answers no event since the last look can have changed (none without one)."""
    if since is None:
        return {}
    moved = {e.get("Type") for e in since if isinstance(e, dict) and e.get("Action") not in UNCHANGING.get(e.get("Type"), ())}
    return {k: v for k, v in answers.items() if not ("image" in moved and k.startswith(IMAGE) or "volume" in moved and k == VOLUMES)}


@dataclass
class Look:
    """One look at Docker: what the last one kept, and one events call for everything since."""

    client: object
    kept_at: Path | None
    kept: Kept
    events: list[dict] | None

    @property
    def since(self) -> list[dict] | None:
        return after_anchor(self.events, self.kept.anchor) if self.events is not None else None

    def answers(self) -> dict[str, object]:
        """The drift check's kept answers still good now (conduit.drivers.docker.recalled)."""
        kept = still_good(self.kept.answers, self.since)
        if len(kept) != len(self.kept.answers):
            log.debug("inspected.answers_asked_again", answers=sorted(set(self.kept.answers) - set(kept)))
        return kept

    def keep(self, infos: dict[str, dict], answers: dict[str, object]) -> None:
        """Keep what this look knows for the next, anchored to the newest event it read."""
        anchor = newest(self.events) if self.events is not None else None
        kept = Kept(anchor, infos, answers)
        if kept != self.kept:  # a look that learned nothing writes nothing
            save(self.kept_at, kept)


def look(client, kept_at: Path | None) -> Look:
    """What was kept at `kept_at`, and Docker's events since it (one call)."""
    kept = load(kept_at)
    return Look(client, kept_at, kept, read_events(client, kept.anchor, time.time_ns()))


def infos(seen: Look, entries: dict[str, dict]) -> dict[str, dict]:
    """{container ID: trimmed inspect answer} for the listed containers (`entries`: list entries by
    ID): an inspect of each container whose kept answer may have moved. A container that vanished
    meanwhile is left out."""
    kept, client = seen.kept, seen.client
    asked = stale(entries, kept, seen.events)
    if asked:
        log.debug("inspected.asked_again", containers=len(asked), why=sorted(set(asked.values())))
    with ThreadPoolExecutor(min(WORKERS, max(1, len(asked)))) as pool:
        fresh = dict(zip(asked, pool.map(lambda cid: inspect(client, cid), asked)))
    found = {cid: fresh[cid] if cid in fresh else kept.infos[cid] for cid in entries}
    return {cid: info for cid, info in found.items() if info is not None}
