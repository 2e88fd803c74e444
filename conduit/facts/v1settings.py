"""The v1/v2 bash managers' settings.conf, read as data, never sourced: KEY=VALUE lines, optionally quoted."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

KNOWN = {
    "MAX_CLIENTS", "BANDWIDTH", "CONTAINER_COUNT", "DOCKER_CPUS", "DOCKER_MEMORY", "DATA_CAP_GB", "DATA_CAP_UP_GB",
    "DATA_CAP_DOWN_GB", "DATA_CAP_IFACE", "DATA_CAP_BASELINE_UP", "DATA_CAP_BASELINE_DOWN", "DATA_CAP_PERIOD_DAYS",
    "DATA_CAP_BASELINE_RX", "DATA_CAP_BASELINE_TX", "DATA_CAP_PRIOR_USAGE",
    "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "TELEGRAM_INTERVAL", "TELEGRAM_ENABLED", "TELEGRAM_ALERTS_ENABLED",
    "TELEGRAM_DAILY_SUMMARY", "TELEGRAM_WEEKLY_SUMMARY", "TELEGRAM_SERVER_LABEL", "TELEGRAM_START_HOUR",
    "TRACKER_ENABLED", "VERSION", "CONTAINER_CPU_LIMIT", "CONTAINER_MEM_LIMIT", "CONTAINER_ULIMIT_NOFILE", "SYSTEM_TUNED",
}  # fmt: skip
PER_CONTAINER = re.compile(r"^(MAX_CLIENTS|BANDWIDTH|CPUS|MEMORY|CONTAINER_CPUS|CONTAINER_MEMORY)_(\d+)$")
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


class SettingsError(Exception):
    """A settings file that cannot be read; one line naming file and line."""


@dataclass
class Settings:
    values: dict[str, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def parse_settings(text: str, name: str = "settings.conf") -> Settings:
    """KEY=VALUE lines as the bash managers write them; comments and blank lines skipped."""
    out = Settings()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise SettingsError(f"{name}:{number}: not a KEY=VALUE line")
        key, value = match.groups()
        try:
            words = shlex.split(value, comments=True)
        except ValueError as exc:
            raise SettingsError(f"{name}:{number}: {key}: {exc}") from None
        out.values[key] = " ".join(words)
        if key not in KNOWN and not PER_CONTAINER.match(key):
            out.unknown.append(key)
    return out
