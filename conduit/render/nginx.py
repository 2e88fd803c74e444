"""The nginx layer-4 front: the stream file the tool owns, and how nginx reads it.

With `instance: own` (the default) the tool runs its own nginx: a main config it writes
whole (workers, worker_connections and open-file limit sized for the spec's capacity, the
stream module, pid file, error log) that includes the stream file, and, where systemd is
PID 1, a unit for it. With `instance: system` the tool never writes nginx.conf as a whole
(other sites may live there); it owns `include_file` entirely and a single line in the
main config that includes it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

from conduit.facts.capacity import front_sizing
from conduit.facts.nginx_include import MANAGED_MARK, insert_include, is_managed_line, remove_include  # noqa: F401 - part of this API
from conduit.spec.resources import Resource
from conduit.render.templating import environment
from conduit.spec.resolve import nodes
from conduit.spec.spec import ClusterSpec, LoadBalancer, Listener, Network

TEMPLATE = "nginx-stream.conf.j2"
MAIN_TEMPLATE = "nginx-main.conf.j2"
UNIT_TEMPLATE = "conduit-nginx.service.j2"
# First line of the stream file; a file at that path without it belongs to someone else.
HEADER_PREFIX = "# Managed by conduit for cluster "
DIGEST_PREFIX = "# digest: "
LOG_FORMAT = "conduit_stream"
# The TCP listeners' accept queue: the sysctl profile's net.core.somaxconn, which caps it.
LISTEN_BACKLOG = 8192
# Backends one client connection tries before it is closed (see the stream template).
NEXT_UPSTREAM_TRIES = 3

# Values pasted into nginx directives unquoted: no whitespace, ';', quotes, braces or '#'
# that would end the directive early or open a new one.
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_./@:+=,%~$-]+$")


def _token(value: str, what: str) -> str:
    if not _SAFE_TOKEN.match(value):
        raise ValueError(f"{what} {value!r} cannot be written into nginx config (spaces, ';', quotes or braces)")
    return value


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def body_digest(content: str) -> str:
    """Digest of everything after the leading comment header (what a hand edit would change)."""
    lines = content.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    return _sha("".join(lines[start:]))


def header_digest(content: str) -> str | None:
    """The digest recorded in the header when the file was written, if any."""
    for line in content.splitlines():
        if not line.startswith("#"):
            return None
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX) :].strip()
    return None


def managed_cluster(content: str) -> str | None:
    """The cluster named by the header of a stream file, or None when the file is not ours."""
    first = content.split("\n", 1)[0]
    if not first.startswith(HEADER_PREFIX):
        return None
    # Cluster names hold no ':' or spaces, so the name ends at the first of them.
    name = re.split(r"[:\s]", first[len(HEADER_PREFIX) :], maxsplit=1)[0]
    return name or None


def backend_address(network: Network, listener: Listener, index: int) -> str:
    """Where nginx reaches container `index` for this listener."""
    if network.backends == "published":
        if listener.host_port_base is None:
            raise ValueError(f"listener {listener.name} needs host_port_base with published backends")
        return f"127.0.0.1:{listener.host_port_base + index - 1}"
    if network.subnet is None:
        raise ValueError("network.subnet is required when backends are reached by address")
    net = ipaddress.ip_network(network.subnet, strict=False)
    # .0 is the network and .1 the bridge gateway: container i is host number i + 1.
    return f"{net.network_address + index + 1}:{listener.backend_port}"


def _balance(lb: LoadBalancer, listener: Listener) -> str | None:
    if listener.protocol == "udp":
        return "hash $remote_addr consistent" if lb.udp_affinity else None
    return {"least_conn": "least_conn", "round_robin": None, "hash": "hash $remote_addr consistent"}[lb.tcp_algorithm]


def _context(spec: ClusterSpec, drained: frozenset[int]) -> dict:
    s = spec.spec
    lb = s.loadbalancer
    cluster = spec.metadata.name
    indexes = [n.index for n in nodes(spec)]
    unknown = sorted(set(drained) - set(indexes))
    if unknown:
        raise ValueError(f"cannot drain containers {unknown}: the cluster has {len(indexes)}")
    limit = lb.per_ip_connection_limit
    upstreams, servers = [], []
    for listener in lb.listeners:
        name = f"conduit_{cluster}_{listener.name}"
        members = []
        for index in indexes:
            member = f"{backend_address(s.network, listener, index)} max_fails={lb.max_fails} fail_timeout={lb.fail_timeout_seconds}s"
            members.append(member + (" down" if index in drained else ""))
        upstreams.append({"name": name, "balance": _balance(lb, listener), "servers": members})
        servers.append(
            {
                "listener": listener.name,
                "udp": listener.protocol == "udp",
                "port": listener.port,
                "upstream": name,
                "limit": limit if listener.protocol == "tcp" else 0,
            }
        )
    own = lb.instance == "own"
    return {
        "cluster": cluster,
        "main_config": lb.nginx.main_config,
        "instance_config": lb.nginx.instance_config if own else None,
        "worker_rlimit_nofile": None if own else lb.worker_rlimit_nofile,
        "log_format": LOG_FORMAT,
        "access_log": _token(lb.access_log, "access_log") if lb.access_log is not None else None,
        "zone": f"conduit_{cluster}_perip" if limit > 0 else None,
        "connect_timeout": lb.proxy_connect_timeout_seconds,
        "backlog": LISTEN_BACKLOG,
        "next_upstream_tries": NEXT_UPSTREAM_TRIES,
        "proxy_timeout": lb.proxy_timeout_seconds,
        "upstreams": upstreams,
        "servers": servers,
    }


def render_stream_conf(spec: ClusterSpec, drained: frozenset[int] = frozenset()) -> str:
    """The whole stream file; its header records a digest of the body so hand edits show."""
    return _with_digest(TEMPLATE, _context(spec, frozenset(drained)))


def _with_digest(name: str, context: dict) -> str:
    template = environment().get_template(name)
    draft = template.render(digest="-", **context)
    return template.render(digest=body_digest(draft), **context)


def render_main_conf(spec: ClusterSpec, include_file: str | None = None) -> str:
    """The whole main config of the tool's own nginx; `include_file` stands in for the stream file
    (a candidate under test)."""
    paths = spec.spec.loadbalancer.nginx
    sizing = front_sizing(spec)
    context = {
        "cluster": spec.metadata.name,
        "capacity": sizing.capacity,
        "listeners": sizing.listeners,
        "workers": sizing.workers,
        "worker_connections": sizing.worker_connections,
        "rlimit_nofile": sizing.rlimit_nofile,
        "stream_module": _token(paths.stream_module, "stream_module") if paths.stream_module else None,
        "pid_file": _token(paths.instance_pid_file, "instance_pid_file"),
        "error_log": _token(paths.error_log, "error_log"),
        "include_file": _token(include_file or paths.include_file, "include_file"),
    }
    return _with_digest(MAIN_TEMPLATE, context)


def nginx_unit_name(cluster: str) -> str:
    return f"conduit-nginx-{cluster}"


def render_nginx_unit(spec: ClusterSpec) -> str:
    """The systemd unit of the tool's own nginx."""
    paths = spec.spec.loadbalancer.nginx
    return environment().get_template(UNIT_TEMPLATE).render(
        cluster=spec.metadata.name,
        binary=_token(paths.binary, "binary"),
        config=_token(paths.instance_config, "instance_config"),
        error_log=_token(paths.error_log, "error_log"),
        pid_file=_token(paths.instance_pid_file, "instance_pid_file"),
        rlimit_nofile=front_sizing(spec).rlimit_nofile,
    )


def front_pid_file(lb: LoadBalancer) -> str:
    """The pid file of the nginx that serves the front."""
    return lb.nginx.instance_pid_file if lb.instance == "own" else lb.nginx.pid_file


def front_config(lb: LoadBalancer) -> str:
    """The main config of the nginx that serves the front."""
    return lb.nginx.instance_config if lb.instance == "own" else lb.nginx.main_config


def include_line(include_file: str) -> str:
    return f"include {_token(include_file, 'include_file')}; {MANAGED_MARK}"


def render_nginx(spec: ClusterSpec, drained: frozenset[int] = frozenset()) -> list[Resource]:
    """Desired nginx resources; `drained` container indexes are marked down in every upstream."""
    lb = spec.spec.loadbalancer
    if not lb.enabled:
        return []
    stream = Resource("nginx_conf", lb.nginx.include_file, {"content": render_stream_conf(spec, drained)})
    if lb.instance == "own":
        main = Resource("nginx_main", lb.nginx.instance_config, {"content": render_main_conf(spec)})
        return [stream, main, Resource("nginx", "nginx", {"running": True})]
    return [
        stream,
        Resource("nginx_include", lb.nginx.main_config, {"line": include_line(lb.nginx.include_file)}),
        Resource("nginx", "nginx", {"running": True}),
    ]
