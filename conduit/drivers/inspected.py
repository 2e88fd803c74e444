"""Each container's inspect answer for any number of containers, Docker asked again only
about those its events say changed.

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
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from conduit.log import logger
from conduit.drivers.docker import answers
from conduit.drivers.dockerapi import failures, refusals
from conduit.drivers.files import atomic_write, read_or_none
from conduit.errors import DockerError

EVENTS_LIMIT = 256  # Docker's in-memory buffer of past events (moby daemon/events/events.go)
KEPT_LIMIT = 8 << 20
WORKERS = 16
log = logger("conduit.inspected")

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
    """What the last look kept: the anchor, and each container's trimmed inspect answer by ID."""

    anchor: Anchor | None = None
    infos: dict[str, dict] = field(default_factory=dict)


def load(path: Path | None) -> Kept:
    """The kept answers; nothing when the file is absent, too big or not what this module writes."""
    text = read_or_none(path) if path is not None else None
    if not text or len(text) > KEPT_LIMIT:
        return Kept()
    try:
        data = json.loads(text)
        anchor = data.get("anchor")
        infos = data.get("infos")
        good = isinstance(anchor, list) and len(anchor) == 2 and isinstance(anchor[0], int) and isinstance(anchor[1], str)
        if not isinstance(infos, dict) or not all(isinstance(v, dict) and v.get("Id") == k for k, v in infos.items()):
            return Kept()
        return Kept((anchor[0], anchor[1]) if good else None, infos)
    except (ValueError, AttributeError):
        return Kept()


def save(path: Path | None, kept: Kept) -> None:
    """Keep the answers for the next look (a look that cannot write them still answers)."""
    if path is None or not path.parent.is_dir():
        return
    try:
        atomic_write(path, json.dumps({"anchor": list(kept.anchor) if kept.anchor else None, "infos": kept.infos}))
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


def current(client, entries: dict[str, dict], kept_at: Path | None) -> dict[str, dict]:
    """{container ID: trimmed inspect answer} for the listed containers (`entries`: list entries by
    ID): one events call, and an inspect of each container whose kept answer may have moved. A
    container that vanished meanwhile is left out."""
    kept = load(kept_at)
    until = time.time_ns()
    events = read_events(client, kept.anchor, until)
    asked = stale(entries, kept, events)
    if asked:
        log.debug("inspected.asked_again", containers=len(asked), why=sorted(set(asked.values())))
    with ThreadPoolExecutor(min(WORKERS, max(1, len(asked)))) as pool:
        fresh = dict(zip(asked, pool.map(lambda cid: inspect(client, cid), asked)))
    infos = {cid: fresh[cid] if cid in fresh else kept.infos[cid] for cid in entries}
    infos = {cid: info for cid, info in infos.items() if info is not None}
    anchor = newest(events) if events is not None else None
    if asked or anchor != kept.anchor or infos.keys() != kept.infos.keys():  # a look that learned nothing writes nothing
        save(kept_at, Kept(anchor, infos))
    return infos
