"""systemd's answers, parsed: `systemctl show`'s Key=Value lines and its ExecStart listing.

Pure functions of text (conduit.drivers.tracker runs systemctl).
"""

from __future__ import annotations

# ActiveState values in which the unit's process runs.
RUNNING_STATES = frozenset({"active", "reloading"})


def parse_systemctl_show(text: str) -> dict[str, str]:
    """`systemctl show`'s lines as {property: value}; a line without '=' is skipped."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key] = value
    return props


def loaded(props: dict[str, str]) -> bool:
    """Whether systemd knows the unit (LoadState is other than not-found)."""
    return props.get("LoadState", "not-found") != "not-found"


def running(props: dict[str, str]) -> bool:
    return props.get("ActiveState") in RUNNING_STATES


def main_pid(props: dict[str, str]) -> int:
    """MainPID, 0 when there is none."""
    return int(props["MainPID"]) if props.get("MainPID", "").isdigit() else 0


def exec_start_argv(exec_start: str, expected: list[str]) -> list[str] | None:
    """argv from systemctl's ExecStart listing (`{ path=... ; argv[]=a b c ; ... }`).

    The listing joins words with spaces, so a word holding spaces cannot be told apart;
    when the listing matches the expected argv word for word it is taken as that argv.
    """
    start = exec_start.find("argv[]=")
    if start < 0:
        return None
    listed = exec_start[start + len("argv[]=") :].split(" ; ", 1)[0].strip()
    if listed == " ".join(expected):
        return list(expected)
    return listed.split() or None
