"""The kernel's /proc files, parsed: a process's argv and parent, socket tables and fd links,
memory, and the IPv4 default route.

Pure functions of the files' text or bytes (the drivers read the files).
"""

from __future__ import annotations


# Socket states in /proc/net/*: a listening TCP socket, a bound UDP socket.
TCP_LISTEN = "0A"
UDP_BOUND = "07"


def cmdline(raw: bytes) -> list[str]:
    """/proc/<pid>/cmdline as argv: NUL-terminated words; a zombie's (or a kernel thread's) is empty."""
    return [part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0")[:-1]] if raw else []


def parent_pid(stat: str) -> int | None:
    """The parent pid in /proc/<pid>/stat, read after the last ')' since comm may hold spaces and parentheses."""
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def socket_inode(link: str) -> int | None:
    """The inode of a /proc/<pid>/fd link to a socket (`socket:[12345]`), None for any other file."""
    digits = link[8:-1]
    return int(digits) if link.startswith("socket:[") and link.endswith("]") and digits.isascii() and digits.isdigit() else None


def _ipv6_wildcard_or_mapped(hex_addr: str) -> bool:
    """A v6 socket that also takes IPv4: :: (dual stack) or an IPv4-mapped address."""
    words = [hex_addr[i : i + 8] for i in range(0, 32, 8)]
    zero = "00000000"
    return words[:2] == [zero, zero] and (words[2] == "FFFF0000" or words[2:] == [zero, zero])


def bound_ports(table: str, protocol: str, v6: bool) -> dict[int, set[int]]:
    """{port: inodes} of the sockets in a /proc/net/{tcp,udp}[6] table listening (TCP) or bound (UDP)
    where a bind on *:port would hit them (a v6-only address never blocks an IPv4 listen)."""
    state = TCP_LISTEN if protocol == "tcp" else UDP_BOUND
    ports: dict[int, set[int]] = {}
    for row in table.splitlines()[1:]:
        fields = row.split()
        if len(fields) < 10 or fields[3] != state:
            continue
        address, _, hex_port = fields[1].rpartition(":")
        if v6 and not _ipv6_wildcard_or_mapped(address):
            continue
        ports.setdefault(int(hex_port, 16), set()).add(int(fields[9]))
    return ports


def mem_total(meminfo: str) -> int:
    """MemTotal of /proc/meminfo in bytes; 0 when it is not there."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def default_interface(route: str) -> str | None:
    """The interface of the IPv4 default route in /proc/net/route (destination and mask 00000000), lowest metric first."""
    best: tuple[int, str] | None = None
    for line in route.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 7 and fields[1] == "00000000" and fields[7] == "00000000":
            metric = int(fields[6])
            if best is None or metric < best[0]:
                best = (metric, fields[0])
    return best[1] if best else None


# A connected socket, TCP or UDP.
ESTABLISHED = "01"


def established_inodes(table: str) -> set[int]:
    """Inodes of the established (TCP) or connected (UDP) sockets in a /proc/net/{tcp,udp}[6] table."""
    inodes: set[int] = set()
    for row in table.splitlines()[1:]:
        fields = row.split()
        if len(fields) >= 10 and fields[3] == ESTABLISHED:
            inodes.add(int(fields[9]))
    return inodes


CAP_SYS_RESOURCE = 24


def has_capability(status: str, bit: int) -> bool:
    """Whether /proc/<pid>/status lists capability `bit` in CapEff."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            try:
                return bool(int(line.split()[1], 16) >> bit & 1)
            except (IndexError, ValueError):
                return False
    return False


def in_containers(cgroup: str, container_ids: set[str]) -> bool:
    """Whether /proc/<pid>/cgroup puts the process in one of these containers (Docker names a
    container's cgroup by its full ID, under cgroupfs and systemd drivers alike)."""
    return any(cid and cid in line for line in cgroup.splitlines() for cid in container_ids)
