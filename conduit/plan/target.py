"""What the executor and its gates need to know of the cluster, rendered from the spec once, when
the plan is made, and carried in the plan (and in a saved plan's file).

With it, the executor runs a plan without the spec: each step carries its own content (a file's
text, a container's config, a drain's stream file), and the target the names, paths and texts
shared by several steps and by the gates (the front's files, each node's labels and ports).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

CANDIDATE = "@candidate@"  # in FrontTarget.test_main: stands for the stream file under test


@dataclass(frozen=True)
class NodeTarget:
    index: int
    volume: str
    max_clients: int
    metrics_port: int
    labels: dict[str, str]  # what the container is created with (conduit.render.container.labels)


@dataclass(frozen=True)
class FrontTarget:
    enabled: bool  # nginx fronts the nodes
    own: bool  # the tool's own nginx instance, not the system's
    binary: str
    config: str  # the main config of the nginx that serves the front
    pid_file: str  # its pid file
    system_pid_file: str  # the system nginx's, which lets go of the ports when the own one takes them
    instance_pid_file: str
    include_file: str  # the stream file
    error_log: str
    tcp_ports: tuple[int, ...] = ()  # the listeners the gates connect through
    stream: str = ""  # the stream file with every node in (a restore, a failed batch)
    test_main: str | None = None  # the own main config with CANDIDATE as its stream file, for nginx -t
    unit_name: str = ""
    unit: str | None = None  # the own nginx's systemd unit, where systemd is PID 1
    test_include: str = ""  # a system nginx's include line naming CANDIDATE, for nginx -t of a stream file


@dataclass(frozen=True)
class Target:
    cluster: str
    front: FrontTarget
    nodes: dict[str, NodeTarget] = field(default_factory=dict)
    gate_timeout: float = 90
    settle: float = 10
    systemd: bool = False  # systemd is PID 1 on the host (Runtime): the own nginx and the tracker run as units
    tracker_unit_name: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        data["front"]["tcp_ports"] = list(self.front.tcp_ports)
        return data

    @classmethod
    def from_json(cls, data: object) -> Target:
        """ValueError, one line, when `data` is not a target's JSON."""
        try:
            front = _exact(FrontTarget, data["front"])  # type: ignore[index]
            front = FrontTarget(**{**front, "tcp_ports": tuple(front["tcp_ports"])})
            nodes = {str(name): NodeTarget(**_exact(NodeTarget, raw)) for name, raw in data["nodes"].items()}  # type: ignore[index]
            rest = _exact(cls, data)
            if not isinstance(rest["systemd"], bool):
                raise ValueError("systemd is not true or false")
            return cls(rest["cluster"], front, nodes, float(rest["gate_timeout"]), float(rest["settle"]), rest["systemd"],
                       str(rest["tracker_unit_name"]))
        except (TypeError, KeyError, AttributeError, ValueError) as exc:
            raise ValueError(f"target is not a plan's target ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class Runtime:
    """What a plan needs of the host it runs on beyond its resources, read when the host is observed:
    whether systemd is PID 1 (then the own nginx and the tracker are units), and what a tracker unit
    names (conduit's absolute path, the state directory). Offline: no systemd, nothing read."""

    systemd: bool = False
    conduit_bin: str = "/usr/local/bin/conduit"  # systemd wants an absolute path
    state_dir: str = ""


def _exact(kind: type, raw: object) -> dict:
    names = {f.name for f in fields(kind)}
    if not isinstance(raw, dict) or set(raw) != names:
        raise ValueError(f"not an object of the fields {', '.join(sorted(names))}")
    return raw
