"""The external programs the tool runs, and the Debian package that installs each one."""

from __future__ import annotations

PACKAGES = {
    "ip": "iproute2",
    "tcpdump": "tcpdump",
    "nginx": "nginx",
    "git": "git",
    "prlimit": "util-linux",
    "systemctl": "systemd",
    "docker": "docker.io",
    "dockerd": "docker.io",
}


def install_hint(program: str) -> str:
    """`apt-get install PACKAGE` for a program the tool runs."""
    return f"apt-get install {PACKAGES.get(program.rsplit('/', 1)[-1], program)}"


def not_installed(program: str) -> str:
    """One line for a program that is not there: `ip is not installed (apt-get install iproute2)`."""
    return f"{program} is not installed ({install_hint(program)})"
