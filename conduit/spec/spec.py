"""The spec language: one ClusterSpec document describes every part of a Conduit host.

Fields left out (None) are filled from the host's hardware profile by
`conduit.spec.resolve`; each field's description says where its default comes from.
These models check each field on its own; checks that need several fields or the
host's facts live in `conduit.spec.checks`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from conduit.spec.units import Auto, ByteCount, DockerSize

API_VERSION = "conduit.psiphon.ca/v1alpha1"
KIND = "ConduitCluster"

# Docker accepts [a-zA-Z0-9][a-zA-Z0-9_.-]*; we keep to lower case so that names,
# labels and file names all agree.
SAFE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_.-]{0,46}[a-z0-9])?$")
SAFE_NAME_HINT = "lower-case letters, digits, '.', '_' or '-', starting and ending with a letter or digit, at most 48 characters"

Port = Annotated[int, Field(ge=1, le=65535)]


def _safe_name(value: str) -> str:
    if not SAFE_NAME.match(value):
        raise ValueError(f"{value!r} is not a safe name ({SAFE_NAME_HINT})")
    return value


def _bandwidth(value: float) -> float:
    # Every released CLI refuses less than 1 Mbps: 1.1 internal/config/config.go:103-105,
    # 1.5 cli/cmd/start.go:106-108, 2.0 cli/cmd/start.go:128-130.
    if value != -1 and value < 1:
        raise ValueError("bandwidth must be at least 1 Mbps (or -1 for unlimited)")
    return value


_TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _time_of_day(value: str) -> str:
    """HH:MM, 24-hour, as Go's time.Parse("15:04") reads it (psiphon-tunnel-core ParseTimeOfDayMinutes)."""
    if not _TIME_OF_DAY.match(value):
        raise ValueError(f"{value!r} is not a time of day (HH:MM, 24-hour, UTC)")
    return value


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def go_duration_seconds(text: str) -> float | None:
    """Seconds of a Go duration ("90m", "1h30m"), or None when time.ParseDuration would refuse it."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body:
        return None
    return -total if text.startswith("-") else total


def _idle_restart(value: str) -> str:
    # ssmirr cli/cmd/start.go:120-129: time.ParseDuration, then at least 30 minutes.
    seconds = go_duration_seconds(value)
    if seconds is None:
        raise ValueError(f"invalid idle-restart duration {value!r} (use a Go duration like 30m, 1h, 2h)")
    if seconds < 30 * 60:
        raise ValueError("idle-restart must be at least 30m")
    return value


def _yaml_no(value: object) -> object:
    """YAML 1.1 reads a bare `no` as false; for a restart policy it means "no"."""
    return "no" if value is False else value


SafeName = Annotated[str, AfterValidator(_safe_name)]
Bandwidth = Annotated[float, AfterValidator(_bandwidth)]
TimeOfDay = Annotated[str, AfterValidator(_time_of_day)]


class Strict(BaseModel):
    """Every model rejects unknown keys, so a typo never passes silently."""

    # No inf or nan: every number is a quantity of something real. defer_build: a model's validator is
    # built when it is first used on its own; a nested one lives inside ClusterSpec's, so most never are.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


# ---------------------------------------------------------------- metadata


class Metadata(Strict):
    name: SafeName = Field(
        description="Cluster name. Labels every object the tool owns, so two clusters can share a host."
    )


# ---------------------------------------------------------------- host


class Host(Strict):
    vcpus: Annotated[float, Field(gt=0, le=4096)] | Auto = Field(
        default="auto",
        description="vCPUs the host offers; auto reads them from the machine (cgroup quota included).",
    )
    memory: ByteCount | Auto = Field(
        default="auto", description="RAM of the host; auto reads MemTotal."
    )
    nic_mbps: Annotated[int, Field(gt=0, le=10_000_000)] | Auto = Field(
        default="auto",
        description="Speed of the primary NIC in Mbit/s; auto reads it from /sys (1000 when the driver does not say).",
    )
    nofile_limit: Annotated[int, Field(gt=0, le=1 << 31)] | Auto = Field(
        default="auto",
        description="Hard open-file limit Docker can grant; auto reads the host's. "
        "A container asking for more fails to start ('error setting rlimit'), so the spec is checked against it.",
    )
    profile: Literal["official", "cluster-v2"] = Field(
        default="official",
        description="How container defaults are sized. official: Psiphon's guidance of about 150-350 clients "
        "per CPU and 2 GB (250 used), one container per 1000 clients, the host shared evenly. "
        "cluster-v2: the cluster edition's model of small nodes, 384 MiB each filling 75% of RAM and 88% "
        "of the CPUs (2 vCPU / 4 GB: 8 containers, 0.22 CPU and 384 MiB each, 250 clients, 3 Mbps).",
    )
    reserve_cpus: float = Field(
        default=0.2, ge=0, le=4096, description="CPU kept free for the OS, nginx and the tracker; limits must fit in the rest."
    )
    reserve_memory: ByteCount = Field(
        default=512 << 20, description="RAM kept free for the OS, nginx and the tracker; limits must fit in the rest."
    )


# ---------------------------------------------------------------- conduit node settings


class DataCap(Strict):
    """conduit-monitor's flags (official images 1.5.0 and later, cli/scripts/monitor/main.go)."""

    traffic_limit_gb: float = Field(
        ge=100, le=1 << 30, description="Traffic allowed per period in GiB (--traffic-limit); conduit-monitor refuses less than 100."
    )
    period_days: int = Field(ge=7, le=3650, description="Length of the traffic period in days (--traffic-period); at least 7.")
    bandwidth_threshold_percent: int | None = Field(
        default=None,
        ge=60,
        le=90,
        description="Share of the cap at which the node is restarted throttled (--bandwidth-threshold, 60-90); "
        "the monitor's default is 80.",
    )
    min_connections: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Max clients while throttled (--min-connections); the monitor's default is 10.",
    )
    min_bandwidth_mbps: int | None = Field(
        default=None,
        ge=1,
        description="Bandwidth in whole Mbit/s while throttled (--min-bandwidth; the monitor passes it as "
        "--bandwidth rounded to a whole number, and conduit refuses less than 1); the monitor's default is 10.",
    )


class ReducedHours(Strict):
    """A daily window of reduced capacity (2.0 --set InproxyReduced* keys, set_overrides.go:28-32)."""

    start: TimeOfDay = Field(description="Start of the window, HH:MM in UTC (InproxyReducedStartTime).")
    end: TimeOfDay = Field(description="End of the window, HH:MM in UTC (InproxyReducedEndTime); may be past midnight.")
    max_clients: int = Field(
        ge=1,
        le=1000,
        description="Max common clients during the window (InproxyReducedMaxCommonClients); "
        "at least 1 and at most the node's max_clients. Clients already connected stay.",
    )
    bandwidth_mbps: float | None = Field(
        default=None,
        ge=1,
        description="Per-client bandwidth during the window in Mbit/s (both InproxyReducedLimit*BytesPerSecond); "
        "unset keeps the node's bandwidth.",
    )

    @model_validator(mode="after")
    def _not_all_day(self) -> ReducedHours:
        if self.start == self.end:
            raise ValueError("start and end are equal: reduced all day is not a valid configuration")
        return self


class Conduit(Strict):
    cli_version: Literal["auto", "1.x", "2.x", "1.1", "1.2", "1.3", "1.4", "1.5", "2.0"] = Field(
        default="auto",
        description="Which CLI the image speaks. auto asks the image (conduit --version, conduit start --help) "
        "at plan time; a version given here is checked against the image when it is on the host, and used "
        "as it is when it is not (1.x means 1.2 or later; say 1.1 for a 1.1 image, which has no --metrics-addr). "
        "2.0 renamed --max-clients to --max-common-clients and removed --stats-file.",
    )
    build: Literal["auto", "official", "community"] = Field(
        default="auto",
        description="official: ghcr.io/psiphon-inc/conduit/cli. community: the ssmirr build "
        "(ghcr.io/ssmirr/conduit/conduit: 1.x flags plus --geo and --idle-restart, no conduit-monitor). "
        "auto asks the image.",
    )
    max_clients: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Max common clients per container (-m). Default from the host profile. 1.x images need at least 1.",
    )
    max_personal_clients: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Max personal clients (--max-personal-clients, 2.0 images only); left to the CLI when unset. "
        "More than 0 needs the node's personal compartment (personal_compartment.json in its data dir, "
        "which the CLI reads by itself); the tool creates it once per node with `conduit new-compartment-id`.",
    )
    bandwidth_mbps: Bandwidth | None = Field(
        default=None,
        description="Bandwidth limit in Mbit/s applied per proxied client (-b); -1 = unlimited. "
        "Default from the host profile. A total cap needs data_cap.",
    )
    data_dir: str = Field(
        default="/home/conduit/data",
        description="Data directory inside the container, where conduit_key.json (the node's identity) lives.",
    )
    metrics_port_base: Port = Field(
        default=9090,
        description="Prometheus metrics of container i are reachable on 127.0.0.1:(base + i - 1); "
        "the tool reads them to prove what each node runs with.",
    )
    verbosity: int = Field(default=0, ge=0, le=2, description="-v count passed to the CLI.")
    data_cap: DataCap | None = Field(
        default=None,
        description="Run the node under conduit-monitor with this traffic cap (official images 1.5.0 and later).",
    )
    reduced_hours: ReducedHours | None = Field(
        default=None,
        description="A daily window of reduced capacity (2.0 images, passed as --set InproxyReduced*=...).",
    )
    idle_restart: Annotated[str, AfterValidator(_idle_restart)] | None = Field(
        default=None,
        description="Restart the node after it has been idle this long, a Go duration of at least 30m "
        "(--idle-restart; the community build only).",
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="Further start flags passed as they are; each flag must be one the image lists in "
        "`conduit start --help` (an official image exits on an unknown flag).",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be an absolute path inside the container")
        return v


# ---------------------------------------------------------------- containers


class Resources(Strict):
    cpus: float | None = Field(
        default=None, gt=0, le=4096,
        description="CPU limit of each node (docker --cpus, at least 0.01). Left out: an even share of the host's CPUs "
        "less reserve_cpus (official profile), recomputed at every plan.",
    )  # fmt: skip
    memory: ByteCount | None = Field(
        default=None,
        description="Memory limit of each node, with its unit (512MiB, 1.5GiB; at least 64MiB). Left out: an even share "
        "of the host's RAM less reserve_memory (official profile), recomputed at every plan.",
    )
    ulimit_nofile: int | None = Field(
        default=None,
        ge=1024,
        description="Open-file limit (soft = hard) of each container. Default 16384, lowered to the host's hard limit.",
    )


class Override(Strict):
    """Settings for one container index that differ from the rest."""

    max_clients: int | None = Field(default=None, ge=0, le=1000)
    bandwidth_mbps: Bandwidth | None = None
    cpus: float | None = Field(default=None, gt=0, le=4096)
    memory: ByteCount | None = None
    ulimit_nofile: int | None = Field(default=None, ge=1024, le=1 << 30)


class Naming(Strict):
    scheme: Literal["indexed", "v1"] = Field(
        default="indexed",
        description="indexed: prefix-1..prefix-N. v1: the bash manager's names, prefix, prefix-2..prefix-N "
        "(and volume_prefix, volume_prefix-2..), so existing nodes keep their volumes and keys.",
    )
    prefix: SafeName = Field(default="conduit", description="Container name prefix.")
    volume_prefix: SafeName = Field(default="conduit-data", description="Data volume name prefix.")


class Security(Strict):
    no_new_privileges: bool = Field(default=True, description="Forbid privilege gain through setuid binaries.")
    cap_drop: list[str] = Field(default_factory=lambda: ["ALL"], description="Capabilities dropped; Conduit needs none.")
    read_only_rootfs: bool = Field(default=False, description="Mount the image read-only (the data volume stays writable).")


class Logging(Strict):
    max_size: DockerSize = Field(default="15m", pattern=r"^\d+[kmg]$", description="json-file log rotation size.")
    max_file: int = Field(default=3, ge=1, le=100, description="json-file log files kept.")


class Containers(Strict):
    count: int | None = Field(
        default=None, ge=1, le=200, description="Number of Conduit containers (nodes). Default from the host profile."
    )
    image: str = Field(
        default="ghcr.io/psiphon-inc/conduit/cli:latest",
        min_length=1,
        description="Conduit image. The tool asks the image which CLI version and build it is (docs/images.md); "
        "pin a version (…/cli:2.0.0) so that plans are repeatable and the version is known before the image is pulled.",
    )
    naming: Naming = Field(default_factory=Naming)
    resources: Resources = Field(default_factory=Resources)
    restart_policy: Annotated[
        Literal["no", "always", "unless-stopped", "on-failure"], BeforeValidator(_yaml_no)
    ] = Field(default="unless-stopped", description="Docker restart policy.")
    security: Security = Field(default_factory=Security)
    logging: Logging = Field(default_factory=Logging)
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for every container.")
    overrides: dict[Annotated[int, Field(ge=1)], Override] = Field(
        default_factory=dict, description="Per-index settings, keyed by container index (1-based)."
    )


# ---------------------------------------------------------------- network


class Network(Strict):
    mode: Literal["host", "bridge"] = Field(
        default="host",
        description="host: best for Conduit's WebRTC (no second NAT); what the v1 manager used. "
        "bridge: containers isolated on a dedicated Docker network; needed for the load balancer.",
    )
    name: SafeName = Field(default="conduit", description="Dedicated Docker network used in bridge mode.")
    subnet: str | None = Field(
        default=None,
        pattern=r"^\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-8])$",
        description="IPv4 subnet of the dedicated network. Required when the load balancer reaches backends by "
        "address (backends: network): container i then gets the subnet's address i + 1.",
    )
    backends: Literal["published", "network"] = Field(
        default="published",
        description="How the load balancer reaches backends: published on 127.0.0.1 ports of the host, "
        "or by fixed addresses on the dedicated network (needs subnet). Pick network for a busy front: nginx "
        "connects to the containers directly, while a published port behind Docker's userland proxy (its "
        "default) costs a docker-proxy goroutine and two file descriptors per session and a second hop.",
    )


# ---------------------------------------------------------------- load balancer


class Listener(Strict):
    name: SafeName = Field(description="Listener name, used for the upstream name.")
    port: Port = Field(description="Port nginx listens on.")
    protocol: Literal["tcp", "udp"] = "tcp"
    backend_port: Port = Field(description="Port the backend listens on inside its container.")
    host_port_base: Port | None = Field(
        default=None,
        description="With published backends: container i is published on 127.0.0.1:(base + i - 1). Required then.",
    )


class NginxPaths(Strict):
    binary: str = Field(default="/usr/sbin/nginx", description="nginx binary.")
    main_config: str = Field(
        default="/etc/nginx/nginx.conf",
        description="The system nginx's main config; with instance: system the tool adds one include line to it.",
    )
    include_file: str = Field(
        default="/etc/nginx/conduit/stream.conf", description="The stream config the tool owns and writes whole."
    )
    pid_file: str = Field(default="/run/nginx.pid", description="Pid file of the system nginx's master.")
    instance_config: str = Field(
        default="/etc/nginx/conduit/nginx.conf",
        description="With instance: own, the main config of the tool's own nginx, written whole by the tool.",
    )
    instance_pid_file: str = Field(default="/run/conduit-nginx.pid", description="Pid file of the tool's own nginx.")
    error_log: str = Field(default="/var/log/nginx/conduit-error.log", description="Error log of the tool's own nginx.")
    stream_module: str | None = Field(
        default="/usr/lib/nginx/modules/ngx_stream_module.so",
        description="The stream module (Debian: libnginx-mod-stream). nginx.conf must load it (Debian's "
        "modules-enabled does); the plan reports it missing rather than loading it twice. The tool's own nginx "
        "loads it itself; null when the binary has the stream module built in.",
    )


class LoadBalancer(Strict):
    enabled: bool = Field(
        default=False,
        description="nginx layer-4 front. Conduit clients arrive over WebRTC on random UDP ports and the CLI opens "
        "no client port, so this front carries no Conduit client traffic; it is for backends that do listen.",
    )
    listeners: list[Listener] = Field(default_factory=list)
    instance: Literal["own", "system"] = Field(
        default="own",
        description="own: the tool runs its own nginx with a main config it writes whole, sized for capacity, and "
        "stops it on destroy. system: the tool adds one include line to the system nginx's main config and "
        "lives with its worker limits.",
    )
    capacity: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Concurrent client sessions each listener must hold. Default: the sum of the nodes' max_clients.",
    )
    capacity_check: Literal["fail", "warn"] = Field(
        default="fail", description="What the plan does when the host cannot hold the capacity: fail, or warn."
    )
    worker_processes: int | None = Field(
        default=None, ge=1, le=256, description="Workers of the tool's own nginx. Default: one per CPU."
    )
    tcp_algorithm: Literal["least_conn", "round_robin", "hash"] = Field(
        default="least_conn", description="TCP balancing; hash keys on the client address."
    )
    udp_affinity: bool = Field(default=True, description="UDP datagrams of one client address go to one backend.")
    # nginx counts a connect that timed out like one refused. Under a burst of connects a live
    # backend times out some of its share, and at 3 a burst took every backend out ("no live
    # upstreams"); a dead backend fails every attempt and (least_conn) draws every new connection,
    # so it is still out within this many connects, each passed on to the next backend.
    max_fails: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="Failed connects (refused or timed out) within fail_timeout_seconds before a backend is taken "
        "out; 0 = never. A burst of connects times some out on live backends: a low count takes the whole pool out.",
    )
    fail_timeout_seconds: int = Field(default=30, ge=1, le=86400, description="How long a failed backend stays out.")
    proxy_connect_timeout_seconds: int = Field(default=5, ge=1, le=3600)
    proxy_timeout_seconds: int = Field(default=300, ge=1, le=86400 * 7, description="Idle timeout of a proxied session.")
    per_ip_connection_limit: int = Field(default=0, ge=0, le=1_000_000, description="Connections per client address; 0 = no limit.")
    access_log: str | None = Field(
        default="/var/log/nginx/conduit-stream.log", description="Stream access log; null turns it off."
    )
    worker_rlimit_nofile: int | None = Field(
        default=None,
        ge=1024,
        description="Open-file limit of nginx workers. With instance: own the tool sizes it for capacity and this "
        "is a floor; with instance: system set it only when nginx.conf does not.",
    )
    nginx: NginxPaths = Field(default_factory=NginxPaths)


# ---------------------------------------------------------------- sysctl


class Sysctl(Strict):
    enabled: bool = True
    profile: Literal["conduit", "cluster-v2", "none"] = Field(
        default="conduit",
        description="conduit: file descriptors, conntrack, UDP buffers and ephemeral ports for many WebRTC peers "
        "(plus accept-queue keys when the load balancer is on). cluster-v2: the cluster edition's values.",
    )
    overrides: dict[str, str | int] = Field(
        default_factory=dict, description="Keys set on top of the profile, for example net.core.rmem_max: 33554432."
    )
    on_refused: Literal["fail", "warn"] = Field(
        default="fail", description="What to do when the kernel refuses a write or lacks a key."
    )
    file: str = Field(default="/etc/sysctl.d/99-conduit.conf", description="The sysctl.d file the tool owns.")

    @field_validator("overrides")
    @classmethod
    def _keys(cls, v: dict[str, str | int]) -> dict[str, str | int]:
        for key in v:
            if not re.match(r"^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$", key):
                raise ValueError(f"{key!r} is not a sysctl key")
        return v


# ---------------------------------------------------------------- tracker


class Tracker(Strict):
    enabled: bool = True
    interface: str = Field(default="auto", description="Interface to sample; auto = the default route's.")
    source: Literal["auto", "metrics", "capture"] = Field(
        default="auto",
        description="auto: per-country metrics of 2.x images, a sampled capture for 1.x images.",
    )
    ports: str = Field(
        default="1024-65535",
        pattern=r"^\d+(-\d+)?(,\d+(-\d+)?)*$",
        description="UDP ports counted by the capture; Conduit serves clients on random ephemeral ports.",
    )
    exclude_ports: list[Port] = Field(default_factory=lambda: [53, 443], description="Ports never counted (DNS, broker).")
    sample_seconds: int = Field(default=10, ge=1, le=300, description="Length of one capture window.")
    interval_seconds: int = Field(default=300, ge=10, le=86400, description="Time between capture windows.")
    snaplen: int = Field(default=96, ge=64, le=1500, description="Bytes kept of each captured packet.")
    geoip: bool = True
    retention_days: int = Field(default=30, ge=1, le=3650)
    keep_addresses_hours: int = Field(
        default=0, ge=0, le=168, description="Keep raw client addresses this long; 0 keeps only per-country totals."
    )


# ---------------------------------------------------------------- health, rollout, alerts


class Health(Strict):
    gate_timeout_seconds: int = Field(default=90, ge=1, le=3600, description="How long a phase may take to turn healthy. "
                                      "A node that no wait brings up fails its gate at once: one Docker restarted 5 times "
                                      "within the gate, or one that exited with no restart policy.")
    settle_seconds: int = Field(default=10, ge=0, le=3600, description="Restart counts must hold steady this long.")


class Rollout(Strict):
    max_unavailable: int = Field(default=1, ge=1, le=200, description="Containers replaced at once.")
    drain_seconds: int = Field(default=5, ge=0, le=3600, description="Wait after taking a backend out of nginx.")


class MaintenanceWindow(Strict):
    start: TimeOfDay = Field(description="Start, HH:MM in UTC.")
    end: TimeOfDay = Field(description="End, HH:MM in UTC; may be past midnight.")


def version_range(text: str) -> SpecifierSet:
    """A version range (">=2.0,<3"); ValueError in one line when it is none."""
    if not text.strip():
        raise ValueError('is empty: give a version range like ">=2.0,<3"')
    try:
        return SpecifierSet(text)
    except InvalidSpecifier as exc:
        raise ValueError(f'is not a version range ({exc}); write it like ">=2.0,<3"') from None


class Updates(Strict):
    """New images behind the spec's tag: how they are found, judged and rolled out."""

    policy: Literal["off", "report", "auto"] = Field(
        default="off",
        description="off: the image as Docker has it under its tag; the registry is never asked. "
        "report: plan, apply and watch ask the registry; a new digest is shown (watch alerts) and the nodes "
        "move to it only with `conduit update`, whose apply pulls it (a plan never does). auto: as report, and apply and watch roll it "
        "out by themselves, canary first, inside the maintenance window.",
    )
    check_every_minutes: int = Field(default=360, ge=1, le=43200, description="How often watch asks the registry.")
    window: MaintenanceWindow | None = Field(default=None, description="When auto updates may start (UTC); unset: any time.")
    canary: Annotated[int, Field(ge=1, le=200)] | Annotated[str, Field(pattern=r"^([1-9][0-9]?|100)%$")] = Field(
        default=1,
        description="Nodes that take a new image first, and are judged before the rest: a count, or a share of the "
        'nodes ("25%", rounded up, at least one).',
    )
    analysis_minutes: float = Field(
        default=10, gt=0, le=1440,
        description="How long a canary that had clients before the update has to win them back.",
    )
    min_clients_ratio: float = Field(
        default=0.5, gt=0, le=1,
        description="The share of its pre-update client count a canary must reach within the analysis window "
        "(a node that had none is judged by the health gates alone: a new key earns clients slowly).",
    )
    versions: str | None = Field(
        default=None,
        examples=[">=2.0,<3"],
        description="Follow a version range instead of the image's own tag: the newest tag of the image's repository "
        "inside it (a version specifier such as \">=2.0,<3\"; pre-releases only when the range names one). "
        "A new host starts on the image's own tag. Needs policy report or auto.",
    )

    @field_validator("versions")
    @classmethod
    def _a_range(cls, v: str | None) -> str | None:
        if v is not None:
            version_range(v)
        return v

    @model_validator(mode="after")
    def _range_needs_the_registry(self) -> Updates:
        if self.versions is not None and self.policy == "off":
            raise ValueError("versions needs policy report or auto: under policy off the registry is never asked")
        return self


class SecretRef(Strict):
    """A secret named, never written in the spec: an environment variable or a file."""

    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self


class Reports(Strict):
    every_hours: int | None = Field(default=None, ge=1, le=24, description="A status report every N hours (None: none).")
    start_hour: int = Field(default=0, ge=0, le=23, description="Reports fall on start_hour + k * every_hours, local time.")
    timezone: str = Field(default="UTC", description="The operator's time zone (IANA name), for report hours and days.")
    daily: bool = Field(default=False, description="A summary of the last day, at start_hour.")
    weekly: bool = Field(default=False, description="A summary of the last week, on Mondays at start_hour.")

    @field_validator("timezone")
    @classmethod
    def _a_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone this host knows (an IANA name such as Europe/Berlin)") from None
        return v


class Bot(Strict):
    poll: bool = Field(default=False, description="This host's agent answers the bot's commands (exactly one host per token).")
    reports: Reports = Field(default_factory=Reports)
    alert_cooldown_minutes: int = Field(default=60, ge=1, le=1440, description="The same alert is not sent again within this.")


class Telegram(Strict):
    bot_token: SecretRef = Field(description="The bot's token: {env: NAME} or {file: PATH}.")
    chat_id: SecretRef = Field(description="The chat to write to: {env: NAME} or {file: PATH}.")
    server_label: str | None = Field(default=None, description="Name of this host in messages.")
    api_url: str = Field(
        default="https://api.telegram.org",
        pattern=r"^https?://[^\s/]+(:\d+)?/?$",
        description="Telegram Bot API server; a self-hosted Bot API server works too.",
    )
    bot: Bot | None = Field(default=None, description="The bot in the agent: commands, buttons, reports.")

    @field_validator("bot_token", "chat_id", mode="before")
    @classmethod
    def _reference_only(cls, v: object) -> object:
        if isinstance(v, (str, int, float)):
            raise ValueError("must be a reference ({env: NAME} or {file: PATH}), never the secret itself")
        return v


class Alerts(Strict):
    telegram: Telegram | None = None


class Budget(Strict):
    """A host-wide monthly traffic cap across all nodes (bytes up plus down)."""

    monthly_gb: float = Field(gt=0, description="Gigabytes (10^9 bytes) a month, all nodes together.")
    resets_on_day: int = Field(default=1, ge=1, le=28, description="The day of the month the count starts again.")
    action: Literal["stop", "throttle"] = Field(
        default="stop",
        description="What happens at 100 % until the reset: stop the nodes, or throttle them (a tiny CPU limit, set in place: clients stay connected).",
    )


# ---------------------------------------------------------------- the document


class Spec(Strict):
    host: Host = Field(default_factory=Host, description="The machine: given or detected hardware, and how defaults are sized.")
    containers: Containers = Field(default_factory=Containers, description="The Conduit containers: each one a node with its own key and volume.")
    network: Network = Field(default_factory=Network, description="Host or bridge networking, and how the front reaches backends.")
    conduit: Conduit = Field(default_factory=Conduit, description="Settings of the Conduit CLI every node runs with.")
    loadbalancer: LoadBalancer = Field(default_factory=LoadBalancer, description="The optional nginx layer-4 front.")
    sysctl: Sysctl = Field(default_factory=Sysctl, description="Kernel tuning, written live and to one sysctl.d file.")
    tracker: Tracker = Field(default_factory=Tracker, description="Per-country clients and traffic of the cluster.")
    health: Health = Field(default_factory=Health, description="Health gates that decide whether an apply stands or is rolled back.")
    rollout: Rollout = Field(default_factory=Rollout, description="How containers are replaced.")
    updates: Updates = Field(default_factory=Updates, description="Image updates: digests, canary, analysis.")
    alerts: Alerts = Field(default_factory=Alerts, description="Where failures and repairs are reported.")
    budget: Budget | None = Field(default=None, description="A monthly traffic cap for the whole host.")


class ClusterSpec(Strict):
    # What the image was found to speak (conduit.spec.resolve.with_image_facts); not part of the document.
    _image_facts: object = PrivateAttr(default=None)
    # What the capacity advisor said when the spec was loaded (conduit.spec.advisor.capacity).
    _capacity: object = PrivateAttr(default=None)

    apiVersion: Literal["conduit.psiphon.ca/v1alpha1"] = Field(description="Version of the spec language.")
    kind: Literal["ConduitCluster"] = Field(description="Always ConduitCluster.")
    metadata: Metadata = Field(description="Names the cluster.")
    spec: Spec = Field(default_factory=Spec, description="What the host should run.")
