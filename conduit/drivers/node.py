"""Ask a running node: its metrics endpoint, the log of its current run, the files in its data volume.

Each answer is parsed by the pure readers in conduit.facts; here is only the asking.
"""

from __future__ import annotations

import os
import stat
import urllib.error
import urllib.request
from pathlib import Path

from conduit.drivers.dockerapi import container_log, failures
from conduit.drivers.volume import STATE_LIMIT, read_entry
from conduit.facts import metrics, monitor, nodelog, statsfile


def scrape(port: int, timeout: float = 2.0) -> dict[metrics.Sample, float] | None:
    """A node's metrics on 127.0.0.1:port, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
            return metrics.parse(response.read().decode(errors="replace"))
    except (OSError, urllib.error.URLError, ValueError):
        return None


def run_log(client, name: str, started_at: str, tty: bool, finished_at: str = "") -> list[str]:
    """The container's log lines of its current run ([] when Docker cannot give them).

    The run begins where the previous one finished (`State.FinishedAt`), not at `StartedAt`:
    Docker records StartedAt after the process is already running, so a node that prints
    at once has lines stamped a little before it. One request, no more than LOG_LIMIT bytes of its
    end read: `tty` is the container's, from the caller's inspect answer.
    """
    bound = nodelog.run_start(started_at, finished_at)
    since = nodelog.instant(bound)
    since_s = since[0] if since and since[0] > 0 else None
    try:
        raw = container_log(client.api, name, tty, LOG_LIMIT, timestamps=True, since=since_s)
    except failures():
        return []
    return nodelog.this_run(raw.decode(errors="replace"), bound)


LOG_CHUNK = 1 << 18
LOG_LIMIT = 32 << 20  # a node that logs without end costs no more than this to read


def _first_stamp(data: bytes) -> tuple[int, int] | None:
    """The time of the first whole record in `data` (its first line may be torn)."""
    lines = data.split(b"\n", 2)
    if len(lines) < 3:
        return None
    return nodelog.instant(nodelog.json_file(lines[1].decode(errors="replace")).partition(" ")[0])


def _read_back(fd: int, bound: tuple[int, int] | None) -> tuple[bytes, bool]:
    """(the file's tail back to before `bound` or to its start, whether it reached the start)."""
    end = size = os.lseek(fd, 0, os.SEEK_END)
    chunks: list[bytes] = []  # newest first: joined once at the end, not copied at every step
    while end > 0 and size - end < LOG_LIMIT:
        first = _first_stamp(b"".join(reversed(chunks[-2:])))  # the oldest line read so far (Docker's lines are short)
        if bound is not None and first is not None and first < bound:
            break
        start = max(0, end - LOG_CHUNK)
        chunks.append(os.pread(fd, end - start, start))
        end = start
    return b"".join(reversed(chunks)), end == 0


def file_log(path: str, started_at: str, finished_at: str = "") -> list[str] | None:
    """The current run's log lines from Docker's own json-file at `path` (the LogPath of its
    inspect answer), read back no further than the run; None when Docker's file cannot be
    read here (a remote Docker daemon, not root), is not a plain file, or the run reaches back into a
    rotated file (Docker's API reads those): the caller asks Docker."""
    bound_text = nodelog.run_start(started_at, finished_at)
    bound = nodelog.instant(bound_text)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data, whole = _read_back(fd, bound)
    except OSError:
        return None
    finally:
        os.close(fd)
    if whole and os.path.lexists(f"{path}.1"):
        first = nodelog.instant(nodelog.json_file(data.split(b"\n", 1)[0].decode(errors="replace")).partition(" ")[0])
        if bound is None or first is None or first > bound:
            return None
    return nodelog.this_run(nodelog.json_file(data.decode(errors="replace")), bound_text)


RECENT_LIMIT = 1 << 20  # what is read of the last lines: a failure's explanation quotes only the last few


def recent_log(client, name: str, tty: bool, tail: int = 500) -> str:
    """The container's last `tail` log lines with their timestamps, no more than RECENT_LIMIT bytes of
    them, whichever runs wrote them ("" when Docker cannot give them); one request: `tty` is the
    container's, from the caller's inspect answer."""
    try:
        raw = container_log(client.api, name, tty, RECENT_LIMIT, timestamps=True, tail=tail)
    except failures():
        return ""
    return raw.decode(errors="replace")


def last_exit_code(client, container_id: str, since: float, until: float) -> int | None:
    """The exit code of the container's last exit between `since` and `until` (epoch seconds), from the
    Docker's events: a container its restart policy started again shows exit code 0 in inspect."""
    try:
        events = client.api.events(since=f"{since:.9f}", until=f"{until:.9f}", decode=True,
                                   filters={"container": [container_id], "event": ["die"]})  # fmt: skip
        codes = [(e.get("Actor") or {}).get("Attributes", {}).get("exitCode") for e in events]
    except failures():
        return None
    codes = [c for c in codes if c is not None and str(c).lstrip("-").isdigit()]
    return int(codes[-1]) if codes else None


def read_stats(folder: Path | None, started_at: str, node: str | None = None) -> tuple[dict, bool]:
    """(samples, stale): the node's figures from its stats file; stale when an earlier run wrote it.

    HostileEntry when the node planted a link or a special file in its place."""
    if folder is None:
        return {}, False
    try:
        data = read_entry(folder, folder.parent.name, statsfile.STATS_FILE, STATE_LIMIT, node)
    except OSError:
        return {}, False
    stats = None if data is None else statsfile.parse_stats(data)
    if stats is None:
        return {}, False
    if not statsfile.fresh(stats, started_at):
        return {}, True
    return statsfile.as_samples(stats), False


def read_traffic_state(folder: Path | None, node: str | None = None) -> monitor.TrafficState | None:
    """conduit-monitor's state in the volume; HostileEntry when the node planted a link or a special file there."""
    if folder is None:
        return None
    try:
        data = read_entry(folder, folder.parent.name, monitor.TRAFFIC_STATE, STATE_LIMIT, node)
    except OSError:
        return None
    return None if data is None else monitor.parse_traffic_state(data)
