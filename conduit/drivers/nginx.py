"""Observe the nginx front: the stream file, the include line, whether nginx runs, and preflight.

Everything is read under the host root; what the text says is read by conduit.facts.nginx,
which is tested from fixtures. Preflight problems are the ones that would make an
apply fail half way (nginx -t or the reload), reported before anything is written.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import posixpath
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conduit.facts import proc as procfacts
from conduit.facts.oneline import one_line
from conduit.facts.capacity import HostLimits, capacity_findings, effective, front_sizing, parse_port_range, system_findings
from conduit.facts.nginx import (
    Statement,
    include_pattern,
    managed_listens,
    names_nginx,
    pidfile_pid,
    statements,
    stream_compiled_in,
)
from conduit.drivers.tracker import systemd_is_init
from conduit.spec.resources import Observation, Resource, host_path
from conduit.render.nginx import body_digest, front_config, front_pid_file, header_digest, is_managed_line, managed_cluster
from conduit.render.sysctl import desired_values
from conduit.spec.spec import ClusterSpec, Listener

INSTALL_HINT = "apt-get install nginx libnginx-mod-stream"
# How deep main-level includes are followed (Debian: nginx.conf -> modules-enabled/*.conf).
MAX_INCLUDE_NESTING = 4


# ------------------------------------------------------------------ nginx.conf reading


@dataclass(frozen=True)
class Found:
    """A statement and the file it sits in; depth counted from nginx.conf's main context."""

    file: str
    statement: Statement
    depth: int
    source_line: str


def walk(root: Path, main_config: str, skip: frozenset[str] = frozenset()) -> list[Found]:
    """Statements of nginx.conf and of the files it includes at main level (not those in `skip`)."""
    conf_dir = posixpath.dirname(main_config)
    found: list[Found] = []
    seen: set[str] = set()

    def visit(path: str, nesting: int) -> None:
        if path in seen or nesting > MAX_INCLUDE_NESTING:
            return
        seen.add(path)
        try:
            text = host_path(root, path).read_text(errors="replace")
        except OSError:
            return
        lines = text.splitlines()
        for st in statements(text):
            source = lines[st.line - 1] if 0 < st.line <= len(lines) else ""
            found.append(Found(path, st, st.depth, source))
            if st.words[0] == "include" and len(st.words) > 1 and st.depth == 0:
                for included in include_targets(root, conf_dir, st.words[1]):
                    if included not in skip:
                        visit(included, nesting + 1)

    visit(main_config, 0)
    return found


def include_targets(root: Path, conf_dir: str, pattern: str) -> list[str]:
    """Host paths (as seen on the host, not under root) an include pattern matches, sorted like nginx."""
    pattern = include_pattern(conf_dir, pattern)
    prefix = str(root).rstrip("/")
    # the root itself is a literal path; only the pattern from nginx.conf is a glob
    matches = glob.glob(glob.escape(prefix) + "/" + pattern.lstrip("/"))
    return sorted("/" + m[len(prefix) :].lstrip("/") for m in matches if os.path.isfile(m))


# ------------------------------------------------------------------ /proc reading


def bound_sockets(proc: Path, protocol: str) -> dict[int, set[int]]:
    """{port: inodes} of the sockets listening (TCP) or bound (UDP) that a bind on *:port would hit,
    each table read once (the kernel writes it out anew on each read, which costs on a host with many connections)."""
    ports: dict[int, set[int]] = {}
    for table in (protocol, protocol + "6"):
        try:
            text = (proc / "net" / table).read_text()
        except OSError:
            continue
        for port, inodes in procfacts.bound_ports(text, protocol, v6=table.endswith("6")).items():
            ports.setdefault(port, set()).update(inodes)
    return ports


def socket_inodes(proc: Path, pid: int) -> set[int]:
    # os's string paths, not pathlib's: a look at every port reads each fd link of every process
    fds = f"{proc}/{pid}/fd"
    inodes: set[int] = set()
    try:
        entries = os.listdir(fds)
    except OSError:
        return inodes
    for entry in entries:
        try:
            inode = procfacts.socket_inode(os.readlink(f"{fds}/{entry}"))
        except OSError:
            continue
        if inode is not None:
            inodes.add(inode)
    return inodes


def children(proc: Path, pid: int) -> set[int]:
    kids: set[int] = set()
    for entry in proc.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if procfacts.parent_pid(stat) == pid:
            kids.add(int(entry.name))
    return kids


def holder(proc: Path, inodes: set[int]) -> str | None:
    """'pid N (name)' of a process holding one of the sockets, when it can be seen."""
    for entry in sorted(proc.glob("[0-9]*"), key=lambda p: int(p.name)):
        if socket_inodes(proc, int(entry.name)) & inodes:
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                name = "?"
            return f"pid {entry.name} ({name})"
    return None


def socket_owners(proc: Path, inodes: set[int]) -> dict[int, tuple[int, str]]:
    """{inode: (pid, name)} of the lowest-numbered process holding each of these sockets, where /proc
    lets it be seen; one pass, which ends once every socket has its holder."""
    owners: dict[int, tuple[int, str]] = {}
    if not inodes:
        return owners
    for pid in sorted(int(name) for name in os.listdir(proc) if name.isdigit()):
        held = socket_inodes(proc, pid) & inodes
        if held:
            try:
                name = (proc / str(pid) / "comm").read_text().strip()
            except OSError:
                name = "?"
            owners.update({inode: (pid, name) for inode in held if inode not in owners})
            if len(owners) == len(inodes):
                break  # a process further on could only hold a socket that already has a lower-numbered holder
    return owners


def master_pid(root: Path, pid_file: str, config: str | None = None) -> int | None:
    """The running nginx master named by the pid file, or None; with `config`, only a master
    started with that main config (the tool's own, never another nginx)."""
    try:
        pid = pidfile_pid(host_path(root, pid_file).read_text())
    except OSError:
        return None
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by another user
    try:
        cmdline = (host_path(root, "/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    # The master rewrites its title to "nginx: master process <argv joined by spaces>".
    if config is not None and config.encode() not in cmdline.replace(b"\0", b" ").split():
        return None
    return pid if names_nginx(cmdline) else None


def front_master(root: Path, spec: ClusterSpec) -> int | None:
    """The master of the nginx that serves this front (the tool's own with instance: own)."""
    lb = spec.spec.loadbalancer
    return master_pid(root, front_pid_file(lb), front_config(lb) if lb.instance == "own" else None)


# ------------------------------------------------------------------ the observation


def observe_nginx(spec: ClusterSpec, root: Path) -> Observation:
    lb = spec.spec.loadbalancer
    obs = Observation()
    ours = _observe_stream_file(spec, root, obs)  # content of our stream file, when there is one
    own = lb.instance == "own"
    if own:
        _observe_own_config(spec, root, obs)
    main_text = _observe_main_config(spec, root, obs)
    master = front_master(root, spec)
    if own and master is not None:
        # The tool's own nginx: reported even with the front off, so that the plan stops it.
        obs.resources.append(Resource("nginx", "nginx", {"running": True}))
    # The system nginx is not ours: with the front off it is neither wanted nor reported,
    # so that no plan ever stops an nginx that serves other sites.
    if not lb.enabled:
        return obs
    if not own:
        obs.resources.append(Resource("nginx", "nginx", {"running": master is not None}))
    obs.problems += _binary_problems(spec, root, main_text)
    if main_text is not None and not own:
        obs.problems += _config_problems(spec, root)
    obs.problems += _port_problems(spec, root, master, ours, main_text)
    findings = _capacity(spec, root)
    (obs.warnings if lb.capacity_check == "warn" else obs.problems).extend(findings)
    return obs


def _observe_own_config(spec: ClusterSpec, root: Path, obs: Observation) -> None:
    """The own nginx's main config: ours (a resource), or someone else's (a problem when the front is on)."""
    lb = spec.spec.loadbalancer
    path = lb.nginx.instance_config
    try:
        content = host_path(root, path).read_text(errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        obs.problems.append(f"cannot read {path}: {exc.strerror or exc}")
        return
    owner = managed_cluster(content)
    if owner == spec.metadata.name:
        obs.resources.append(Resource("nginx_main", path, {"content": content}))
        if header_digest(content) != body_digest(content):
            obs.drifted.add(("nginx_main", path))
        return
    obs.foreign.append(path if owner is None else f"{path} (conduit cluster {one_line(owner)})")
    if lb.enabled:
        obs.problems.append(f"{path} exists and is not this cluster's; refusing to overwrite it")


def read_limits(root: Path, own_unit: bool = True) -> HostLimits:
    """The limits the capacity preflight weighs: this process's open-file hard limit, root or not,
    fs.file-max, fs.nr_open and the ephemeral port range."""

    def number(key: str) -> int | None:
        try:
            return int(host_path(root, "/proc/sys/" + key).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    try:
        ports = parse_port_range(host_path(root, "/proc/sys/net/ipv4/ip_local_port_range").read_text())
    except OSError:
        ports = None
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = hard if hard != resource.RLIM_INFINITY else 1 << 30
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    # A unit's LimitNOFILE is set by systemd; a master started here inherits this process's
    # limit and may raise it only with CAP_SYS_RESOURCE (root in a container often lacks it).
    may_raise = (own_unit and systemd_is_init()) or procfacts.has_capability(status, procfacts.CAP_SYS_RESOURCE)
    return HostLimits(hard, may_raise, number("fs/file-max"), number("fs/nr_open"), ports)


def _capacity(spec: ClusterSpec, root: Path) -> list[str]:
    lb = spec.spec.loadbalancer
    sizing = front_sizing(spec)
    desired = desired_values(spec) if spec.spec.sysctl.enabled else {}
    found = capacity_findings(spec, sizing, effective(read_limits(root, lb.instance == "own"), desired))
    if lb.instance == "system":
        found += _system_capacity(spec, root, sizing)
    return found


def _system_capacity(spec: ClusterSpec, root: Path, sizing) -> list[str]:
    """The system nginx's own worker_connections against the promised capacity."""
    paths = spec.spec.loadbalancer.nginx
    connections, workers, where = 512, 1, paths.main_config  # nginx's built-in defaults
    for f in walk(root, paths.main_config, frozenset({paths.include_file})):
        words = f.statement.words
        if words[0] == "worker_connections" and len(words) > 1 and words[1].isdigit():
            connections, where = int(words[1]), f"{f.file}:{f.statement.line}"
        elif words[0] == "worker_processes" and len(words) > 1:
            workers = int(words[1]) if words[1].isdigit() else max(1, int(float(spec.spec.host.vcpus or 1) + 0.999))
    return system_findings(sizing, connections, workers, where)


def _observe_stream_file(spec: ClusterSpec, root: Path, obs: Observation) -> str | None:
    """The include file: ours (its content), another's or unreadable (problems when the front is on)."""
    lb = spec.spec.loadbalancer
    paths = lb.nginx
    conf_path = host_path(root, paths.include_file)
    if not conf_path.is_file():
        if conf_path.exists() and lb.enabled:
            obs.problems.append(f"{paths.include_file} exists and is not a file; refusing to overwrite it")
        return None
    try:
        content = conf_path.read_text(errors="replace")
    except OSError as exc:
        obs.problems.append(f"cannot read {paths.include_file}: {exc.strerror or exc}")
        return None
    owner = managed_cluster(content)
    if owner == spec.metadata.name:
        obs.resources.append(Resource("nginx_conf", paths.include_file, {"content": content}))
        if header_digest(content) != body_digest(content):
            obs.drifted.add(("nginx_conf", paths.include_file))
        return content
    if owner is None:
        obs.foreign.append(paths.include_file)
        if lb.enabled:
            obs.problems.append(
                f"{paths.include_file} exists and is not managed by conduit; refusing to overwrite it"
            )
    else:
        obs.foreign.append(f"{paths.include_file} (conduit cluster {one_line(owner)})")
        if lb.enabled:
            obs.problems.append(
                f"{paths.include_file} belongs to conduit cluster {one_line(owner)}; refusing to overwrite it"
            )
    return None


def _observe_main_config(spec: ClusterSpec, root: Path, obs: Observation) -> str | None:
    """nginx.conf's text (None when unreadable), and our include line in it when it is there."""
    lb = spec.spec.loadbalancer
    paths = lb.nginx
    try:
        main_text = host_path(root, paths.main_config).read_text(errors="replace")
    except OSError:
        if lb.enabled and lb.instance == "system":
            obs.problems.append(f"{paths.main_config} not found: is nginx installed? ({INSTALL_HINT})")
        return None
    for text in main_text.splitlines():
        if is_managed_line(text):
            obs.resources.append(Resource("nginx_include", paths.main_config, {"line": text.strip()}))
            break
    return main_text


def _binary_problems(spec: ClusterSpec, root: Path, main_text: str | None) -> list[str]:
    paths = spec.spec.loadbalancer.nginx
    binary = host_path(root, paths.binary)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return [f"nginx not found at {paths.binary}: {INSTALL_HINT}"]
    try:
        result = subprocess.run([str(binary), "-V"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"cannot run {paths.binary} -V: {exc}"]
    if spec.spec.loadbalancer.instance == "own":
        return _own_module_problems(spec, root, stream_compiled_in(result.stdout + result.stderr))
    if stream_compiled_in(result.stdout + result.stderr):
        return []
    if main_text is None:
        return []  # the missing nginx.conf is already reported
    loaded = any(
        f.depth == 0 and f.statement.words[0] == "load_module" and len(f.statement.words) > 1
        and posixpath.basename(f.statement.words[1]) == "ngx_stream_module.so"
        for f in walk(root, paths.main_config, frozenset({paths.include_file}))
    )
    if loaded:
        return []
    if not host_path(root, paths.stream_module).exists():
        return [f"nginx has no stream module ({paths.stream_module} is missing): apt-get install libnginx-mod-stream"]
    return [
        f"the nginx stream module is installed but {paths.main_config} does not load it: add "
        f"'load_module {paths.stream_module};' at its top (libnginx-mod-stream does this in /etc/nginx/modules-enabled)"
    ]


def _own_module_problems(spec: ClusterSpec, root: Path, built_in: bool) -> list[str]:
    module = spec.spec.loadbalancer.nginx.stream_module
    if built_in and module is not None:
        return ["this nginx has the stream module built in: set spec.loadbalancer.nginx.stream_module: null"]
    if not built_in and module is None:
        return [f"this nginx has no built-in stream module: set spec.loadbalancer.nginx.stream_module ({INSTALL_HINT})"]
    if module is not None and not host_path(root, module).exists():
        return [f"nginx has no stream module ({module} is missing): apt-get install libnginx-mod-stream"]
    return []


def _config_problems(spec: ClusterSpec, root: Path) -> list[str]:
    lb = spec.spec.loadbalancer
    paths = lb.nginx
    conf_dir = posixpath.dirname(paths.main_config)
    problems: list[str] = []
    found = walk(root, paths.main_config, frozenset({paths.include_file}))
    for f in found:
        st = f.statement
        where = f"{f.file}:{st.line}"
        if st.depth == 0 and st.block and st.words[0] == "stream":
            problems.append(
                f"{paths.main_config} already has a stream block ({where}); nginx allows only one and conduit's "
                "include brings its own: remove that block or turn the front off"
            )
        elif st.depth == 0 and st.words[0] == "worker_rlimit_nofile" and lb.worker_rlimit_nofile is not None:
            problems.append(
                f"{paths.main_config} already sets worker_rlimit_nofile ({where}); nginx refuses it twice: "
                "leave spec.loadbalancer.worker_rlimit_nofile unset or remove that line"
            )
        elif st.words[0] == "include" and len(st.words) > 1 and not is_managed_line(f.source_line):
            pattern = include_pattern(conf_dir, st.words[1])
            if not fnmatch.fnmatchcase(paths.include_file, pattern):
                continue
            if st.depth > 0:
                problems.append(
                    f"{paths.include_file} is also included inside a block of nginx's config by "
                    f"'include {st.words[1]}' ({where}); a stream block cannot go there: choose another include_file"
                )
            else:
                problems.append(
                    f"{paths.include_file} is already included by {where} outside conduit's managed line; "
                    "remove that line (conduit adds its own)"
                )
    return problems


def _port_problems(spec: ClusterSpec, root: Path, master: int | None, ours: str | None, main_text: str | None) -> list[str]:
    proc = host_path(root, "/proc")
    masters = {master} - {None}
    if spec.spec.loadbalancer.instance == "own" and main_text is not None and any(map(is_managed_line, main_text.splitlines())):
        # The system nginx still serves this front from an earlier apply: this one takes its line out.
        masters.add(master_pid(root, spec.spec.loadbalancer.nginx.pid_file))
    nginx_inodes: set[int] = set()
    for each in masters - {None}:
        for pid in {each, *children(proc, each)}:
            nginx_inodes |= socket_inodes(proc, pid)
    served = managed_listens(ours) if ours is not None else set()
    problems: list[str] = []
    tables = {listener.protocol: bound_sockets(proc, listener.protocol) for listener in spec.spec.loadbalancer.listeners}
    listener: Listener
    for listener in spec.spec.loadbalancer.listeners:
        inodes = tables[listener.protocol].get(listener.port, set())
        if not inodes:
            continue
        label = f"{listener.port}/{listener.protocol}"
        others = inodes - nginx_inodes
        if others:
            who = holder(proc, others)
            problems.append(f"port {label} is already in use by another process" + (f" ({who})" if who else "")
                            + f"; stop that process or change listener {listener.name}'s port in spec.loadbalancer.listeners")
        elif (listener.protocol, listener.port) not in served:
            problems.append(
                f"port {label} is already in use by nginx itself (a server outside conduit's stream file listens on it)"
            )
    return problems


# ------------------------------------------------------------------ the front's load


def front_load(spec: ClusterSpec, root: Path) -> dict:
    """The front's live connections (its workers' established or connected sockets, client and
    backend sides both), against the ceiling the tool sized it for."""
    sizing = front_sizing(spec)
    own = spec.spec.loadbalancer.instance == "own"
    figure: dict = {
        "running": False,
        "connections": None,
        "ceiling": sizing.ceiling if own else None,
        "sessions": sizing.sessions,
        "workers": None,
    }
    master = front_master(root, spec)
    if master is None:
        return figure
    proc = host_path(root, "/proc")
    workers = children(proc, master)
    live: set[int] = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            live |= procfacts.established_inodes((proc / "net" / table).read_text())
        except OSError:
            continue
    held = set().union(*(socket_inodes(proc, pid) for pid in workers)) if workers else set()
    figure.update(running=True, connections=len(held & live), workers=len(workers))
    return figure
