"""conduit-monitor, the data-cap supervisor of the official image (1.5.0 and later).

Psiphon-Inc/conduit cli/scripts/monitor/main.go (the same at release-cli-1.5.0 and 2.0.0 but
for the renamed client flag):
- :104-216  its own flags come before `--`: --traffic-limit, --traffic-period,
  --bandwidth-threshold (default 80, :28), --min-connections (default 10, :111),
  --min-bandwidth (default 10 Mbps, :112), and --data-dir/-d and --metrics-addr, which it also
  passes to conduit.
- :317-323  once throttled it restarts conduit with the client flag (1.5: --max-clients, 2.0:
  --max-common-clients) set to --min-connections and --bandwidth to "%.0f" of --min-bandwidth:
  a node that then reports 10 max clients is doing what it was told, not drifting.
- :346-352  a conduit that exits with an error is started again after 5 s: the container
  stays "running" with 0 restarts while no conduit serves.
- :40-44, :568-574  traffic_state.json in the data dir: {periodStartTime, bytesUsed,
  isThrottled}, rewritten in place (not atomically) with os.WriteFile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

TRAFFIC_STATE = "traffic_state.json"
MONITOR = "conduit-monitor"
_OWN = ("traffic-limit", "traffic-period", "bandwidth-threshold", "min-connections", "min-bandwidth", "data-dir", "d", "metrics-addr")


@dataclass(frozen=True)
class MonitorSettings:
    min_connections: int = 10
    min_bandwidth_mbps: float = 10.0
    threshold_percent: int = 80
    data_dir: str = "./data"

    @property
    def throttled_bandwidth(self) -> int:
        """conduit_bandwidth_limit_bytes_per_second of a throttled node: "%.0f" Mbps, then Mbps*1e6/8."""
        return int(float(f"{self.min_bandwidth_mbps:.0f}") * 1000 * 1000 / 8)


@dataclass(frozen=True)
class TrafficState:
    period_start: str
    bytes_used: int
    throttled: bool


def is_monitor(entrypoint: list[str] | None) -> bool:
    return bool(entrypoint) and Path(entrypoint[0]).name == MONITOR


def _looks_like_value(arg: str) -> bool:
    """main.go:84-91: not a flag, or a negative number."""
    if not arg.startswith("-"):
        return True
    try:
        float(arg)
        return True
    except ValueError:
        return False


def monitor_flags(command: list[str]) -> dict[str, str]:
    """The monitor's own flags (before `--`), by name without dashes."""
    out: dict[str, str] = {}
    args = command[: command.index("--")] if "--" in command else list(command)
    i = 0
    while i < len(args):
        name, eq, value = args[i].lstrip("-").partition("=")
        if args[i].startswith("-") and name in _OWN:
            if not eq and i + 1 < len(args) and _looks_like_value(args[i + 1]):
                value = args[i + 1]
                i += 1
            out["data-dir" if name == "d" else name] = value
        i += 1
    return out


def _number(flags: dict[str, str], name: str, default: float) -> float:
    try:
        return float(flags[name])
    except (KeyError, ValueError):
        return default


def monitor_settings(entrypoint: list[str] | None, command: list[str] | None) -> MonitorSettings | None:
    """What conduit-monitor was told, from the container's own entrypoint and command; None without it."""
    if not is_monitor(entrypoint):
        return None
    flags = monitor_flags(list(entrypoint[1:]) + list(command or []))
    return MonitorSettings(
        min_connections=int(_number(flags, "min-connections", 10)),
        min_bandwidth_mbps=_number(flags, "min-bandwidth", 10.0),
        threshold_percent=int(_number(flags, "bandwidth-threshold", 80)),
        data_dir=flags.get("data-dir") or "./data",
    )


def parse_traffic_state(data: bytes) -> TrafficState | None:
    """traffic_state.json, or None when it is absent, half-written or not the monitor's."""
    try:
        state = json.loads(data)
    except ValueError:
        return None
    if not isinstance(state, dict) or not isinstance(state.get("isThrottled"), bool):
        return None
    used = state.get("bytesUsed")
    return TrafficState(str(state.get("periodStartTime") or ""), used if isinstance(used, int) else 0, state["isThrottled"])
