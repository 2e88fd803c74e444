"""The host policy: what a spec may choose on this host, written only by root on the host.

A spec may come from a git repository other people push to, and the tool runs as root. The
policy file (default /etc/conduit/host.yaml, option --policy, env CONDUIT_POLICY) names the
binaries, the directories the tool may write or read, the secrets a spec may name, the image
repositories and the Telegram API a spec may use; the spec picks within it. With no file, the
defaults below hold: Debian's own paths and the two Conduit image repositories.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import stat
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conduit.errors import PolicyError
from conduit.spec.policy_file import DEFAULT_PATH, policy_path
from conduit.spec.units import DockerSize

# What Conduit's own tuning needs: file descriptors, socket buffers and queues, ephemeral ports,
# TCP timers and conntrack. Anything else (kernel.*, vm.*, bpf, forwarding) must be named by the policy.
SYSCTL_KEYS = frozenset({
    "fs.file-max", "fs.nr_open",
    "net.core.rmem_max", "net.core.wmem_max", "net.core.rmem_default", "net.core.wmem_default",
    "net.core.somaxconn", "net.core.netdev_max_backlog", "net.core.optmem_max", "net.core.default_qdisc",
    "net.ipv4.ip_local_port_range", "net.ipv4.tcp_congestion_control", "net.ipv4.tcp_fastopen",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_mem", "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_max_tw_buckets", "net.ipv4.udp_mem",
    "net.ipv4.udp_rmem_min", "net.ipv4.udp_wmem_min",
})  # fmt: skip
SYSCTL_PREFIXES = ("net.netfilter.nf_conntrack_",)


class _Strict(BaseModel):
    # Validators built on first use, as conduit.spec.spec.Strict's.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class NginxPolicy(_Strict):
    binaries: list[str] = Field(default=["/usr/sbin/nginx"], description="nginx binaries the tool may run (patterns).")
    main_configs: list[str] = Field(default=["/etc/nginx/nginx.conf"], description="Main configs it may add its include line to (patterns).")
    config_dirs: list[str] = Field(default=["/etc/nginx"], description="Where its stream file and its own nginx's main config may be.")
    pid_dirs: list[str] = Field(default=["/run"], description="Where the master's pid file may be.")
    log_dirs: list[str] = Field(default=["/var/log/nginx"], description="Where the stream access log and its own nginx's error log may be.")
    module_dirs: list[str] = Field(default=["/usr/lib/nginx/modules"], description="Where the stream module its own nginx loads may be.")


class SysctlPolicy(_Strict):
    dirs: list[str] = Field(default=["/etc/sysctl.d"], description="Where the tool's sysctl.d file may be.")
    extra_keys: list[str] = Field(default=[], description="Keys allowed beyond the network, file and conntrack ones.")


class SecretsPolicy(_Strict):
    file_dirs: list[str] = Field(default=["/etc/conduit/secrets"], description="Where secret files named by a spec may be.")
    env: list[str] = Field(default=["CONDUIT_*", "TELEGRAM_*"], description="Environment variables a spec may name (patterns).")


class GitPolicy(_Strict):
    require_signed_commits: bool = Field(default=False, description="Apply only commits signed (SSH signatures) by a key in allowed_signers.")
    allowed_signers: str = Field(default="/etc/conduit/allowed_signers",
                                 description="git's allowed signers file (`EMAIL ssh-ed25519 KEY` lines), owned by root.")
    max_fetch: DockerSize = Field(
        default="256m", pattern=r"^[1-9]\d*[kmg]$",
        description="The most one fetch of a followed repository may write (git's pack of the new commits); a commit that needs more is not fetched.",
    )


class TelegramPolicy(_Strict):
    chats: list[int] = Field(default=[], description="Chat ids the bot answers in; every other chat is ignored and audited.")
    operators: list[int] = Field(default=[], description="User ids that may read and act (restart, stop, sync, rollback, QR).")
    viewers: list[int] = Field(default=[], description="User ids that may only read.")


class HostPolicy(_Strict):
    images: list[str] = Field(
        default=["ghcr.io/psiphon-inc/conduit/*", "ghcr.io/ssmirr/conduit/*"],
        description="Image references a spec may use (patterns over registry/repository:tag).",
    )
    telegram_api_urls: list[str] = Field(default=["https://api.telegram.org"], description="Telegram API base URLs (patterns).")
    max_containers: int = Field(default=200, ge=1, le=200)
    max_node_log: DockerSize = Field(
        default="1g", pattern=r"^[1-9]\d*[kmg]$",
        description="The most disk one node's Docker log may take: containers.logging max_size times max_file.",
    )
    nginx: NginxPolicy = Field(default_factory=NginxPolicy)
    sysctl: SysctlPolicy = Field(default_factory=SysctlPolicy)
    secrets: SecretsPolicy = Field(default_factory=SecretsPolicy)
    git: GitPolicy = Field(default_factory=GitPolicy)


    telegram: TelegramPolicy = Field(default_factory=TelegramPolicy, description="Who the bot answers.")


def load_policy(path: str | None = None) -> tuple[HostPolicy, str]:
    """The policy in effect and where it came from ("defaults" when no file is there)."""
    path = path or policy_path()
    try:
        real = trusted_path(path)
    except FileNotFoundError:
        return _load(path, -1, 0, 0)
    except OSError as exc:
        raise PolicyError(f"host policy {path}: cannot read: {exc.strerror}") from None
    except UntrustedPath as exc:
        raise PolicyError(f"host policy {path}: {exc}") from None
    return _load(path, *_stat(path, real))


def _stat(path: str, real: str) -> tuple[int, int, int]:
    try:
        st = os.lstat(real)
    except OSError as exc:
        raise PolicyError(f"host policy {path}: cannot read: {exc.strerror}") from None
    return (st.st_mtime_ns, st.st_uid, st.st_mode)


class UntrustedPath(Exception):
    """A directory or link on the way to a root-only file lets someone else swap it; one line."""


MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())  # root, or whoever runs the tool (as for the file itself)


def trusted_path(path: str) -> str:
    """The path with its links resolved, walked one component at a time from `/` with lstat, as
    sshd's StrictModes checks: every directory looked up in must be owned by root and writable by
    no group or other, and a link is followed only when root owns it. A sticky directory (/tmp,
    mode 1777) may be writable by all when the entry looked up in it is root's: the sticky bit
    lets no one else rename or remove root's entry. FileNotFoundError when a component is missing."""
    pending = [c for c in os.path.abspath(path).split("/") if c]
    current, links = "/", 0
    while pending:
        name = pending.pop(0)
        if name in (".", ".."):
            current = os.path.dirname(current) if name == ".." else current
            continue
        entry = os.path.join(current, name)
        st = os.lstat(entry)
        _check_dir(current, st.st_uid)
        if not stat.S_ISLNK(st.st_mode):
            current = entry
            continue
        if not _trusted_owner(st.st_uid):
            raise UntrustedPath(f"{entry} is a link owned by uid {st.st_uid}, not root; name the file by its real path or `chown -h root {entry}`")
        links += 1
        if links > MAX_LINKS:
            raise UntrustedPath(f"more than {MAX_LINKS} links on the way to it; name the file by its real path")
        target = os.readlink(entry)
        current = "/" if target.startswith("/") else current
        pending = [c for c in target.split("/") if c] + pending
    return current


def _check_dir(directory: str, entry_uid: int) -> None:
    """`directory` may hold a root-only file whose entry `entry_uid` owns."""
    st = os.lstat(directory)
    if not _trusted_owner(st.st_uid):
        raise UntrustedPath(f"directory {directory} is owned by uid {st.st_uid}, not root; chown root {directory}")
    sticky = st.st_mode & stat.S_ISVTX and _trusted_owner(entry_uid)
    if st.st_mode & 0o022 and not sticky:
        raise UntrustedPath(f"directory {directory} is writable by group or others; chmod go-w {directory}")


@lru_cache(maxsize=8)
def _load(path: str, mtime: int, uid: int, mode: int) -> tuple[HostPolicy, str]:
    if mtime == -1:
        if path != DEFAULT_PATH:
            raise PolicyError(f"host policy {path}: no such file")
        return HostPolicy(), "the default host policy"
    if uid not in (0, os.geteuid()) or mode & 0o022:
        raise PolicyError(f"host policy {path}: must be owned by root and writable by no one else (chmod 600 {path})")
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
        return HostPolicy.model_validate(data), f"host policy {path}"
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"host policy {path}: cannot read: {' '.join(str(exc).split())}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PolicyError(f"host policy {path}: {where}: {first['msg']}") from None


# ------------------------------------------------------------------ what a spec may choose


def clean_path(value: str) -> str | None:
    """The path when it is absolute and already normal (no '..', '.', '//' or trailing '/'), else None."""
    if not value.startswith("/") or "\0" in value:
        return None
    return value if posixpath.normpath(value) == value and not value.startswith("//") else None


def under(value: str, dirs: list[str]) -> bool:
    path = clean_path(value)
    return path is not None and any(path.startswith(d.rstrip("/") + "/") for d in dirs)


def matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def sysctl_allowed(key: str, policy: HostPolicy) -> bool:
    return key in SYSCTL_KEYS or key.startswith(SYSCTL_PREFIXES) or key in policy.sysctl.extra_keys
