"""Ask a running node: its metrics endpoint, the log of its current run, the files in its data volume.

Each answer is parsed by the pure readers in conduit.facts; here is only the asking.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import time
from pathlib import Path

from conduit.drivers.dockerapi import container_log, failures
from conduit.drivers.volume import STATE_LIMIT, read_entry
from conduit.facts import metrics, monitor, nodelog, statsfile

METRICS_CHUNK = 1 << 16


METRICS_LIMIT = 4 << 20  # a 2.x node's metrics, every country included, are some hundred KiB
_OK = re.compile(rb"HTTP/1\.[01] 200[ \r]")


def scrape(port: int, timeout: float = 2.0) -> dict[metrics.Sample, float] | None:
    """A node's metrics on 127.0.0.1:port, or None when it does not answer 200 within `timeout`.

    A compromised node writes this answer: it is read to one deadline (an answer dripped a byte at
    a time, headers included, ends there, not at a timeout that each byte starts again) and to
    METRICS_LIMIT bytes (an endless one ends there too). HTTP/1.0: the node closes the connection
    after its answer and sends no chunks."""
    try:
        raw = _get_metrics(port, timeout)
    except OSError:
        return None
    head, blank, body = (raw or b"").partition(b"\r\n\r\n")
    if not blank or not _OK.match(head + b"\r"):
        return None
    return metrics.parse(body.decode(errors="replace"))


def _get_metrics(port: int, timeout: float) -> bytes | None:
    """The whole answer to GET /metrics, or None past the deadline or the size."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        chunks, total = [], 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            chunk = sock.recv(METRICS_CHUNK)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > METRICS_LIMIT:
                return None
            chunks.append(chunk)


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
