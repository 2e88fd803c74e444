"""What a node says in its container log, for the signals that exist nowhere else.

- The start line, the only proof of a setting on nodes without --metrics-addr (1.1):
  1.1/1.2 cli/cmd/start.go:136/:139 and 1.3 service.go:123 print
  `Starting Psiphon Conduit (Max Clients: N, Bandwidth: B)`; 1.4/1.5 service.go:141 prefix a
  timestamp and `[OK] `; 2.0 service.go:145 prints `… (Max Common Clients: N, Max Personal
  Clients: M, Bandwidth: B)`; the community build (ssmirr) is 1.x-worded without [OK].
- `WARNING: A newer version of Conduit is required. Please upgrade.` (2.0 service.go:431-432;
  every version has it): the network refuses this version; only a new image helps.
- Why a conduit under conduit-monitor keeps exiting: cobra's `Error: …` line and the
  monitor's `[ERROR] Conduit exited with error: …` (scripts/monitor/main.go:349).

Docker keeps a container's log across restarts, so only lines stamped at or after the
container's current start belong to the run that is being judged.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

UPGRADE_REQUIRED = "WARNING: A newer version of Conduit is required. Please upgrade."
_START = re.compile(
    r"Starting Psiphon Conduit \(Max (?:Common )?Clients: (\d+)(?:, Max Personal Clients: (\d+))?, Bandwidth: ([^)]*)\)"
)
_INSTANT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
_ERROR = re.compile(r"(Error: .*|\[ERROR\] Conduit exited with error: .*)$")


@dataclass(frozen=True)
class StartLine:
    max_clients: int
    max_personal_clients: int | None
    bandwidth: str  # "40 Mbps" or "unlimited", as the node printed it


def instant(text: str) -> tuple[int, int] | None:
    """An RFC 3339 (nano) time as (seconds since the epoch, nanoseconds); None when it is not one."""
    match = _INSTANT.match(text or "")
    if not match:
        return None
    whole, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp()
    return int(seconds), int((fraction or "0").ljust(9, "0"))


def run_start(started_at: str, finished_at: str) -> str:
    """Where a container's current run begins in its log: the end of its previous run when it
    had one (FinishedAt before StartedAt), else its whole log ("")."""
    finished, started = instant(finished_at), instant(started_at)
    if finished is not None and started is not None and finished[0] > 0 and finished < started:
        return finished_at
    return ""


def this_run(raw: str, started_at: str) -> list[str]:
    """The lines of a `docker logs --timestamps` text written since `started_at` (all when "")."""
    start = instant(started_at)
    out = []
    for line in raw.splitlines():
        stamp, _, text = line.partition(" ")
        when = instant(stamp)
        if when is None:
            continue
        if start is None or when >= start:
            out.append(text)
    return out


def json_file(raw: str) -> str:
    """Docker's json-file log (one `{"log": …, "stream": …, "time": …}` object a line, as dockerd
    writes it) as a `docker logs --timestamps` text. A line that is not such an object (a torn
    first or last line) is skipped."""
    out = []
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("log"), str) and isinstance(entry.get("time"), str):
            text = entry["log"]
            out.append(f"{entry['time']} {text}" + ("" if text.endswith("\n") else "\n"))
    return "".join(out)


def last_run(raw: str, started_at: str, finished_at: str, serving: bool) -> list[str]:
    """The lines of the run a failed gate is about, from a `docker logs --timestamps` text: the
    current run when the container serves and never restarted (`serving`); otherwise the run that
    ended last, up to its `finished_at`, so that the lines of a run started since are not taken for it."""
    if serving:
        return this_run(raw, run_start(started_at, finished_at))
    end = instant(finished_at)
    out = []
    for line in raw.splitlines():
        stamp, _, text = line.partition(" ")
        when = instant(stamp)
        if when is not None and (end is None or end[0] <= 0 or when <= end):
            out.append(text)
    return out


def start_line(lines: list[str]) -> StartLine | None:
    """The last start line of the run: the settings the node says it started with."""
    for line in reversed(lines):
        match = _START.search(line)
        if match:
            personal = match.group(2)
            return StartLine(int(match.group(1)), None if personal is None else int(personal), match.group(3).strip())
    return None


def upgrade_required(lines: list[str]) -> bool:
    return any(UPGRADE_REQUIRED in line for line in lines)


def last_error(lines: list[str]) -> str | None:
    """The last error the node (or its monitor) logged, for a gate's one-line reason."""
    for line in reversed(lines):
        match = _ERROR.search(line)
        if match:
            return match.group(1).strip()[:200]
    return None


# A run of 32 or more key-like characters: a key, a token or a secret in base64 or hex. Never quoted.
_SECRET_LIKE = re.compile(r"[A-Za-z0-9+/_=-]{32,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
QUOTED_LINES = 3
QUOTED_WIDTH = 160


def quote(lines: list[str], count: int = QUOTED_LINES, width: int = QUOTED_WIDTH) -> str:
    """The last `count` non-empty log lines as one line ("a | b | c"), for an error: control
    characters gone, anything that looks like a key or token redacted, each line trimmed to `width`."""
    out = []
    for line in lines:
        text = _SECRET_LIKE.sub("[redacted]", _CONTROL.sub(" ", line)).strip()
        if text:
            out.append(text if len(text) <= width else text[: width - 1] + "…")
    return " | ".join(out[-count:])


# What an operator is shown of a node's log: one chat message's worth (Telegram's is 4096 characters).
SHOWN_LINES = 50
SHOWN_BYTES = 3500
SHOWN_READ = 1 << 16  # what is read of the log's end for them: ample once escapes and controls are dropped
_BREAKS = frozenset({"Zl", "Zp"})  # U+2028, U+2029: a new line to whoever shows the text
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)?")  # CSI, OSC, and any other escape


def printable(text: str) -> str:
    """`text` without terminal escapes, line or paragraph separators, or any control, format or
    unassigned character (carriage returns, bidi overrides, zero-width marks): a node's log is what
    strangers made it say. A tab becomes a space."""
    text = _ESCAPE.sub("", text).replace("\t", " ")
    return "".join(c for c in text if unicodedata.category(c)[0] != "C" and unicodedata.category(c) not in _BREAKS)


def shown(raw: str, lines: int = SHOWN_LINES, size: int = SHOWN_BYTES) -> list[str]:
    """The last `lines` lines of a log, printable, that fit in `size` bytes of UTF-8 joined by newlines;
    a single line longer than that keeps its end."""
    out: list[str] = []
    left = size
    whole = raw.removesuffix("\n").split("\n") if raw else []  # Docker's lines: a carriage return is no line of its own
    for line in reversed(whole[-lines:] if lines > 0 else []):
        text = printable(line)
        cost = len(text.encode()) + (1 if out else 0)
        if cost > left:
            if not out and left > 0:  # the newest line alone is too long: its end, cut on a character
                out.append(text.encode()[-left:].decode(errors="ignore"))
            break
        out.append(text)
        left -= cost
    return out[::-1]
