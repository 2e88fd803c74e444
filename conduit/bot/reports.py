"""Reports on the operator's clock: a status every N hours aligned to a start hour, a daily summary
at the start hour and a weekly one on Mondays, each figure read from the agent's history; and
alerts sent once per cooldown however often they are seen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from conduit.bot.views import size
from conduit.spec.spec import Reports


@dataclass(frozen=True)
class Point:
    """One node over one bucket of the agent's timeline."""

    at: float
    node: str
    clients: float  # mean over the bucket
    bytes: int  # up + down moved in the bucket
    observed: int  # observations in the bucket
    up: int  # of them, how many saw the node up


class History(Protocol):
    def points(self, since: float, until: float) -> list[Point]: ...
    def countries(self, since: float, until: float) -> dict[str, float]: ...  # region -> most clients in a bucket
    def events(self, since: float, until: float) -> list[tuple[float, str]]: ...  # (at, restart | apply | rollback)


def due(reports: Reports, last: datetime, now: datetime) -> list[str]:
    """The reports whose hour fell in (last, now], in the operator's zone: "status", "daily", "weekly"."""
    zone = ZoneInfo(reports.timezone)
    hour = last.astimezone(zone).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    found: list[str] = []
    while hour <= now.astimezone(zone):
        since_start = (hour.hour - reports.start_hour) % 24
        if reports.every_hours and since_start % reports.every_hours == 0 and "status" not in found:
            found.append("status")
        if hour.hour == reports.start_hour and reports.daily and "daily" not in found:
            found.append("daily")
        if hour.hour == reports.start_hour and hour.weekday() == 0 and reports.weekly and "weekly" not in found:
            found.append("weekly")
        hour += timedelta(hours=1)
    return found


def summary(title: str, history: History, since: float, until: float) -> str:
    points = history.points(since, until)
    by_time: dict[float, float] = {}
    for p in points:
        by_time[p.at] = by_time.get(p.at, 0) + p.clients
    countries = history.countries(since, until)
    before = set(history.countries(since - 28 * 86400, since))
    events = [kind for _, kind in history.events(since, until)]
    top = sorted(countries.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return "\n".join([
        title,
        f"clients: peak {max(by_time.values(), default=0):.0f}, average {sum(by_time.values()) / max(1, len(by_time)):.1f}",
        f"served: {size(sum(p.bytes for p in points))}",
        f"uptime: {100.0 * sum(p.up for p in points) / max(1, sum(p.observed for p in points)):.1f} %",
        "top countries: " + (", ".join(f"{r} {c:.0f}" for r, c in top) or "-"),
        "new countries: " + (", ".join(sorted(set(countries) - before)) or "-"),
        f"restarts {events.count('restart')}, applies {events.count('apply')}, rollbacks {events.count('rollback')}",
    ])  # fmt: skip


class Cooldown:
    """The same alert text goes out at most once per `seconds`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.sent: dict[str, float] = {}

    def fresh(self, lines: list[str], now: float) -> list[str]:
        out = []
        for line in dict.fromkeys(lines):  # de-duplicated, in order
            if now - self.sent.get(line, float("-inf")) >= self.seconds:
                self.sent[line] = now
                out.append(line)
        return out
