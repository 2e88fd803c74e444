"""Observe the cluster's Docker objects: one labelled list call for all containers.

In-place limits (CPU, memory) are not in the list answer; they are read from the
containers' cgroups, which is where the kernel enforces them. Only a container whose
cgroup cannot be read (stopped, or a remote Docker daemon) costs an inspect call.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from conduit.drivers import dockerapi
from conduit.drivers.dockerapi import API_VERSION, DEFAULT_HOST, archive_status, container_log, failures, image_not_found, not_found, refusals
from conduit.drivers.files import read_or_none
from conduit.drivers.polling import retries
from conduit.errors import DockerDown, DockerError
from conduit.drivers.nginx import bound_sockets, socket_owners
from conduit.facts import proc as proc_facts
from conduit.facts.oneline import one_line
from conduit.drivers.programs import not_installed
from conduit.spec.resources import Observation, Resource
from conduit.render.container import (
    CLUSTER,
    CONFIG,
    IN_PLACE,
    INDEX,
    LABEL,
    MANAGED_BY,
    MANAGER,
    config_from_labels,
    container_props,
    with_config,
)
from conduit.spec.advisor import capacity, shared_host
from conduit.spec.image import ImageFacts, from_probe
from conduit.spec.resolve import nodes
from conduit.spec.spec import ClusterSpec



# Steps run side by side at most (new volumes, new nodes, the nodes of one replace batch): each on a
# connection of its own (conduit.drivers.dockerapi), all of them at once as Docker Compose does, so
# the daemon always has the next create or start in hand. On 2 busy vCPUs, creating and starting
# 40 nodes took a median 3.8 s 10 at a time, 3.5 s 20 at a time, 2.9 s 40 at once (6 rounds each).
SIDE_BY_SIDE = 64
SDK_SIDE_BY_SIDE = 10  # a host only the SDK speaks to (ssh://, https://): its pool, and sshd's 10 sessions


def side_by_side(base_url: str) -> int:
    """How many creates and starts go to this daemon at once."""
    return SDK_SIDE_BY_SIDE if dockerapi.endpoint(base_url) is None else SIDE_BY_SIDE


class CountingClient:
    """Docker for conduit, counting the HTTP requests it makes: the reads over plain HTTP
    (conduit.drivers.dockerapi), the writes through the Docker SDK, loaded on the first write.
    A host only the SDK speaks to (ssh://, https://) is the SDK's for everything."""

    def __init__(self, base_url: str | None, kept: dict[str, object] | None = None):
        self.base_url = base_url or DEFAULT_HOST
        self.calls = 0
        self._counting = threading.Lock()  # the side-by-side creates and starts count from many threads
        self.kept = kept  # status's kept answers (recalled); None: every read asks
        self._sdk = None
        self._making = threading.Lock()
        where = dockerapi.endpoint(self.base_url)
        self.api = self.sdk() if where is None else dockerapi.DockerAPI(where, self._count, self.sdk)
        self.side_by_side = side_by_side(self.base_url)

    def _count(self) -> None:
        with self._counting:
            self.calls += 1

    def sdk(self):
        """The Docker SDK's APIClient for this daemon, its requests counted too: one client, made by
        whichever of the side-by-side threads asks first."""
        with self._making:
            if self._sdk is None:
                self._sdk = self._counted_sdk()
            return self._sdk

    def _counted_sdk(self):
        import docker  # pulls, networks, updates and ssh:// or https:// hosts: a read-only command must not pay its import

        try:
            client = docker.APIClient(base_url=self.base_url, version=API_VERSION, timeout=60)
        except docker.errors.DockerException as exc:
            raise diagnose(self.base_url, exc) from None
        send = client.send

        def counted(request, **kwargs):
            self._count()
            return send(request, **kwargs)

        client.send = counted
        return client


SBIN_PATH = "/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin"


def dockerd_installed() -> bool:
    """Docker's binary is here (root's PATH has the sbin directories; others' may not)."""
    return shutil.which("dockerd", path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}") is not None


USUAL_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")  # where a packaged dockerd listens
UNREACHABLE = "cannot reach the Docker daemon at "


def docker_down(base_url: str) -> str:
    """A local socket that is absent or refuses: a stopped Docker daemon, or none installed."""
    if not dockerd_installed():
        return f"{UNREACHABLE}{base_url}: {not_installed('dockerd')}"
    path = base_url.removeprefix("unix://")
    state = "refuses connections" if Path(path).exists() else "is absent"
    elsewhere = "" if path in USUAL_SOCKETS else ", or give --docker-host (DOCKER_HOST) the socket it listens on"
    return (f"{UNREACHABLE}{base_url}: dockerd is installed but not running "
            f"({path} {state}); start it with `systemctl start docker`{elsewhere}")


def diagnose(base_url: str, exc: BaseException) -> DockerError:
    """The one-line fault for what Docker's client raised; DockerDown when the daemon does not answer."""
    text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        return DockerError(f"permission denied on the Docker daemon at {base_url}: run as root or as a member of the docker group")
    if base_url.startswith("unix://") and any(m in text for m in ("No such file", "FileNotFoundError", "Connection refused")):
        return DockerDown(docker_down(base_url))
    if "No such file" in text or "FileNotFoundError" in text or "Connection refused" in text or "ConnectionError" in text:
        return DockerDown(f"{UNREACHABLE}{base_url}: is dockerd running? (set DOCKER_HOST or --docker-host)")
    first = text.splitlines()[0] if text else type(exc).__name__
    return DockerError(f"the Docker daemon at {base_url} failed: {first}")


def call(client: CountingClient, fn, *args, **kwargs):
    """One API call with a one-line diagnosis instead of a traceback."""
    try:
        return fn(*args, **kwargs)
    except failures() as exc:
        raise diagnose(client.base_url, exc) from None


IMAGE, VOLUMES = "image ", "volumes"  # the keys of the answers recalled (`IMAGE + ref`)


def recalled(client: CountingClient, key: str, ask):
    """Docker's answer for `key`: the one status kept in `client.kept` (conduit.drivers.inspected
    drops those an event since can have changed), else asked, and kept there when the client keeps
    answers. A plan's client keeps none: it asks."""
    kept = client.kept
    if kept is not None and key in kept:
        return kept[key]
    answer = ask()
    if kept is not None:
        kept[key] = answer
    return answer


@contextmanager
def answers(client: CountingClient) -> Iterator[None]:
    """Calls whose API answers (NotFound, a refusal: docker.errors.APIError) the caller handles
    itself; a Docker daemon that does not answer at all (stopped, crashed, unreachable) is an DockerError.
    Both families are caught: conduit.drivers.dockerapi's (the reads) and the SDK's (the writes)."""
    try:
        yield
    except refusals():
        raise
    except failures() as exc:
        raise diagnose(client.base_url, exc) from None


TASK_LEFT_SECONDS = 5.0  # containerd's old task of a container goes within a few seconds


def start_container(client: CountingClient, name: str, timeout: float = TASK_LEFT_SECONDS) -> None:
    """Start a container. Right after a daemon restart, containerd may still hold the task of the
    container's last run ("task ...: already exists") for a moment: that answer is waited out (for
    `timeout` seconds, asked again after pauses that start small), as a person would run `docker start`
    again; any other refusal is raised (docker.errors.APIError)."""

    def start() -> Exception | None:
        """None once started; containerd's refusal to wait out; any other refusal raised."""
        try:
            with answers(client):
                client.api.start(name)
        except refusals() as exc:
            if "already exists" not in str(exc.explanation or exc):
                raise
            return exc
        return None

    refused = start()
    if refused is not None:
        for _ in retries(timeout):
            if (refused := start()) is None:
                return
        raise refused


def docker_answers(client: CountingClient) -> bool:
    """Whether Docker answers a ping now."""
    try:
        return bool(client.api.ping())
    except failures():
        return False


# ----------------------------------------------------------------- cgroup limits



def cgroup_limits(root: Path, container_id: str) -> tuple[float, int] | None:
    """(cpus, memory bytes) from the container's cgroup, v1 or v2, cgroupfs or systemd driver."""
    base = root / "sys/fs/cgroup"
    for group in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
        v2 = read_or_none(base / group / "cpu.max")
        if v2 is not None:
            quota, _, period = v2.partition(" ")
            memory = read_or_none(base / group / "memory.max")
            cpus = 0.0 if quota == "max" else int(quota) / int(period)
            return round(cpus, 3), 0 if memory in (None, "max") else int(memory)
        quota = read_or_none(base / "cpu" / group / "cpu.cfs_quota_us")
        period = read_or_none(base / "cpu" / group / "cpu.cfs_period_us")
        memory = read_or_none(base / "memory" / group / "memory.limit_in_bytes")
        if quota is not None and period is not None and memory is not None:
            cpus = 0.0 if int(quota) < 0 else int(quota) / int(period)
            mem = int(memory)
            return round(cpus, 3), 0 if mem >= 1 << 62 else mem
    return None


def inspect_limits(client: CountingClient, container_id: str) -> tuple[float, int]:
    host_config = call(client, client.api.inspect_container, container_id)["HostConfig"]
    return round((host_config.get("NanoCpus") or 0) / 1e9, 3), host_config.get("Memory") or 0


# ----------------------------------------------------------------- observation


def _ports(entry: dict) -> list[str]:
    out = set()
    for port in entry.get("Ports") or []:
        if port.get("PublicPort"):
            out.add(f"{port.get('IP', '0.0.0.0')}:{port['PublicPort']}:{port['PrivatePort']}/{port['Type']}")
    return sorted(out)


def _volume(entry: dict) -> str | None:
    for mount in entry.get("Mounts") or []:
        if mount.get("Type") == "volume":
            return f"{mount['Name']}:{mount['Destination']}"
    return None


def _network(entry: dict) -> tuple[str, str | None]:
    mode = (entry.get("HostConfig") or {}).get("NetworkMode", "default")
    networks = (entry.get("NetworkSettings") or {}).get("Networks") or {}
    ip = None
    for settings in networks.values():
        ip = ((settings or {}).get("IPAMConfig") or {}).get("IPv4Address") or ip
    return mode, ip


def container_resource(entry: dict, limits: tuple[float, int]) -> tuple[Resource, bool]:
    """A container as the host has it; True when it was changed by hand since it was created."""
    created_with = config_from_labels(entry.get("Labels") or {}) or {}
    network, ip = _network(entry)
    seen = dict(created_with)
    # What the list answer shows directly wins over what the label says it was created with.
    seen.update({"network": network, "ip": ip, "ports": _ports(entry), "volume": _volume(entry)})
    seen["cpus"], seen["memory"] = limits
    if entry.get("ImageID"):
        seen["image_id"] = entry["ImageID"]
    seen["state"] = entry.get("State", "unknown")
    # A container made before images were pinned has no image_id in its label: that is no drift.
    compared = [k for k in seen if k != "state" and (k != "image_id" or k in created_with)]
    drifted = any(seen.get(k) != created_with.get(k) for k in compared) or seen["state"] != "running"
    name = entry["Names"][0].lstrip("/")
    return Resource("container", name, seen, frozenset(seen) - IN_PLACE), drifted


def observe_docker(spec: ClusterSpec, client: CountingClient, listed: list[dict] | None = None) -> Observation:
    """`listed`: Docker's list of every container, when the caller asked it already (status does)."""
    obs = Observation()
    start = client.calls
    # One call for every container: ours carry the cluster label; same-named others are foreign.
    entries = listed if listed is not None else call(client, client.api.containers, all=True)
    for entry in entries:
        _observe_container(spec, client, entry, obs)
    _observe_volumes(spec, client, obs)
    if spec.spec.network.mode == "bridge":
        _observe_network(spec, client, obs)
    running = {r.id for r in obs.resources if r.kind == "container" and r.props.get("state") == "running"}
    obs.problems += port_problems(spec, running, _own_ids(spec, entries))
    obs.warnings += shared_host_warnings(spec, entries)
    obs.api_calls = client.calls - start
    return obs


def _own_ids(spec: ClusterSpec, entries: list[dict]) -> set[str]:
    """The IDs of this cluster's own containers: a port one of them holds is not another process's."""
    return {e["Id"] for e in entries if (e.get("Labels") or {}).get(CLUSTER) == spec.metadata.name
            and (e.get("Labels") or {}).get(MANAGED_BY) == MANAGER}  # fmt: skip


def shared_host_warnings(spec: ClusterSpec, entries: list[dict]) -> list[str]:
    """One warning per other conduit cluster with nodes on this host, when this spec leaves some of
    its sizing to defaults counted from the whole host (as the loader's advisor found): both clusters
    would count the host as their own. A warning, no step: it is no drift. The other's name is its
    label, which any local process can set: shown in one line."""
    sized = capacity(spec).host_sized
    if not sized:
        return []
    others = Counter(labels.get(CLUSTER, "?") for labels in ((e.get("Labels") or {}) for e in entries)
                     if labels.get(MANAGED_BY) == MANAGER and labels.get(CLUSTER) != spec.metadata.name)  # fmt: skip
    return [shared_host(one_line(other), count, sized) for other, count in sorted(others.items())]


def _observe_container(spec: ClusterSpec, client: CountingClient, entry: dict, obs: Observation) -> None:
    labels = entry.get("Labels") or {}
    cname = entry["Names"][0].lstrip("/")
    if not (labels.get(MANAGED_BY) == MANAGER and labels.get(CLUSTER) == spec.metadata.name):
        _observe_other_container(spec, client, entry, cname, obs)
        return
    if CONFIG not in labels or INDEX not in labels:
        obs.warnings.append(f"container {one_line(cname)} has conduit labels from another version; it will be replaced")
    # Cgroups live on Docker's host, whatever --root says; a remote Docker daemon has none here.
    limits = cgroup_limits(Path("/"), entry["Id"]) if entry.get("State") == "running" else None
    if limits is None:
        limits = inspect_limits(client, entry["Id"])
    resource, drifted = container_resource(entry, limits)
    obs.resources.append(resource)
    if drifted:
        obs.drifted.add(resource.key)


def cluster_collisions(spec: ClusterSpec, cname: str, labels: dict[str, str]) -> list[str]:
    """What a node of this spec would share with `cname`, a node of another conduit cluster:
    its name, its volume (its key) or a host port. One line each, naming both (theirs as their labels
    and Docker say them, in one line)."""
    other, shown = one_line(labels.get(CLUSTER, "?")), one_line(cname)
    created_with = config_from_labels(labels) or {}
    their_volume = (created_with.get("volume") or "").split(":")[0]
    their_ports = _host_ports(created_with)
    problems = []
    for node in nodes(spec):
        props = container_props(spec, node)
        if node.name == cname:
            problems.append(f"container {shown} belongs to cluster {other} (managed by conduit); "
                            f"give cluster {spec.metadata.name} another name/prefix (containers.naming) or remove it there")  # fmt: skip
        elif their_volume and node.volume == their_volume:
            problems.append(f"volume {node.volume} of {node.name} (cluster {spec.metadata.name}) is the volume of {shown} "
                            f"(cluster {other}): two nodes on one key; give cluster {spec.metadata.name} another containers.naming.volume_prefix")  # fmt: skip
        for port in sorted(_host_ports(props) & their_ports):
            problems.append(f"port {port} of {node.name} (cluster {spec.metadata.name}) is held by {shown} (cluster {other}); "
                            f"give cluster {spec.metadata.name} another conduit.metrics_port_base or listener port")  # fmt: skip
    return problems


def _host_ports(props: dict) -> set[str]:
    """The host ports a container's rendered config holds: the metrics address on the host
    network, and every published port."""
    command = props.get("command") or []
    held = {f"{p.split(':')[1]}/{p.rsplit('/', 1)[1]}" for p in props.get("ports") or []}
    if props.get("network") == "host" and "--metrics-addr" in command[:-1]:
        held.add(f"{command[command.index('--metrics-addr') + 1].rsplit(':', 1)[-1]}/tcp")
    return held


def _observe_other_container(spec: ClusterSpec, client: CountingClient, entry: dict, cname: str, obs: Observation) -> None:
    """A container the tool did not make: adopted when it is a bash-manager node, foreign when it only
    has our name; a node of another conduit cluster is refused where it would collide with ours."""
    labels = entry.get("Labels") or {}
    if labels.get(MANAGED_BY) == MANAGER:
        problems = cluster_collisions(spec, cname, labels)
        if problems:
            obs.foreign.append(f"container {one_line(cname)} (conduit cluster {one_line(labels.get(CLUSTER, '?'))})")
            obs.problems += problems
        return
    wanted_volume = {n.name: n.volume for n in nodes(spec)}
    if cname not in wanted_volume:
        return
    volume = f"{wanted_volume[cname]}:{spec.spec.conduit.data_dir}"
    if _volume(entry) == volume and not labels.get(MANAGED_BY):
        # The bash managers' node: same name, same volume, so the same key. Take it over.
        resource, _ = container_resource(entry, inspect_limits(client, entry["Id"]))
        obs.resources.append(Resource("container", cname, resource.props, resource.replace_fields, adopt=True))
        return
    obs.foreign.append(f"container {cname} exists and is not managed by conduit")
    obs.problems.append(
        f"container {cname} exists and is not managed by conduit, and does not use volume {volume}; "
        "rename or remove it, or change containers.naming"
    )


def _observe_volumes(spec: ClusterSpec, client: CountingClient, obs: Observation) -> None:
    wanted_volumes = {n.volume for n in nodes(spec)}
    for volume in recalled(client, VOLUMES, lambda: call(client, client.api.volumes)).get("Volumes") or []:
        if volume["Name"] in wanted_volumes or (volume.get("Labels") or {}).get(CLUSTER) == spec.metadata.name:
            obs.resources.append(Resource("volume", volume["Name"], {}, keep=True))


def _observe_network(spec: ClusterSpec, client: CountingClient, obs: Observation) -> None:
    for net in call(client, client.api.networks, names=[spec.spec.network.name]):
        if net["Name"] != spec.spec.network.name:
            continue  # the names filter matches substrings
        configs = (net.get("IPAM") or {}).get("Config") or []
        subnet = configs[0].get("Subnet") if configs and spec.spec.network.subnet else None
        obs.resources.append(
            Resource("network", net["Name"], {"driver": net.get("Driver"), "subnet": subnet}, frozenset({"driver", "subnet"}))
        )


def _wanted_ports(spec: ClusterSpec, running: set[str]) -> list[tuple[str, int, str, str, bool]]:
    """(protocol, port, what, node, on the host network) of every host port the nodes bind. A port
    published through Docker is held by its docker-proxy, so a running node's are its own."""
    wanted = []
    for node in nodes(spec):
        if spec.spec.network.mode == "host":
            wanted.append(("tcp", node.metrics_port, "metrics", node.name, True))
        if node.name in running:
            continue
        for published in container_props(spec, node)["ports"]:
            _ip, host_port, target = published.split(":")
            wanted.append((target.split("/")[1], int(host_port), f"port {target}", node.name, False))
    return wanted


def _strangers(proc: Path, holders: set[tuple[int, str]], own_ids: set[str]) -> list[tuple[int, str]]:
    """The holders that are not in one of the cluster's own containers."""
    return sorted(h for h in holders if not proc_facts.in_containers(read_or_none(proc / str(h[0]) / "cgroup") or "", own_ids))


def _bound(proc: Path, wanted: list[tuple]) -> dict[tuple[str, int], set[int]]:
    """{(protocol, port): inodes bound there} for each wanted port, each /proc/net table read once."""
    tables = {protocol: bound_sockets(proc, protocol) for protocol in {w[0] for w in wanted}}
    return {(protocol, port): tables[protocol].get(port, set()) for protocol, port, *_ in wanted}


def port_problems(spec: ClusterSpec, running: set[str], own_ids: set[str] = frozenset(), proc: Path = Path("/proc")) -> list[str]:
    """Host ports the nodes need, held by a process that is not one of this cluster's own containers
    (found by its cgroup), whether the cluster already runs or not: one line each, naming the holder."""
    wanted = _wanted_ports(spec, running)
    bound = _bound(proc, wanted)
    owners = socket_owners(proc, set().union(*bound.values()) if bound else set())
    problems = []
    for protocol, port, what, name, host_network in wanted:
        inodes = bound[(protocol, port)]
        holders = {owners[i] for i in inodes if i in owners}
        foreign = _strangers(proc, holders, own_ids)
        if not inodes or (holders and not foreign) or (not holders and name in running):
            continue  # free, held by our own container, or held unseen while the node that binds it runs
        who = ", ".join(f"pid {pid} ({one_line(comm)})" for pid, comm in foreign) or "a process /proc does not show"
        fix = "change conduit.metrics_port_base" if host_network else "change the port in the spec"
        problems.append(f"port {port}/{protocol} ({what} of {name}) is already in use by another process: {who}; "
                        f"stop that process or {fix}")  # fmt: skip
    return problems


# ----------------------------------------------------------------- asking an image what it speaks

PROBE_LABEL = f"{LABEL}.probe"
PROBE_TIMEOUT = 30
PROBE_OUTPUT = 1 << 20  # what is read of a probe's output: `--version` and `start --help` say what they say at its start
# Docker's PATH when an image sets none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def inspect_image(client: CountingClient, image: str) -> dict | None:
    """The image's attributes, or None when it is not on this host."""
    return recalled(client, IMAGE + image, lambda: _inspect_image(client, image))


def _inspect_image(client: CountingClient, image: str) -> dict | None:
    try:
        return client.api.inspect_image(image)
    except image_not_found():
        return None
    except failures() as exc:
        raise diagnose(client.base_url, exc) from None


# ----------------------------------------------------------------- registries


class RegistryError(Exception):
    """The registry could not say what a tag means now, or give an image; one line."""


def repository(image: str) -> str:
    """The image's repository, without tag or digest ("ghcr.io/psiphon-inc/conduit/cli")."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


def image_tag(image: str) -> str | None:
    """The image's tag ("2.0.0"), None when it has none or only a digest."""
    name = image.split("@", 1)[0]
    return name[len(repository(name)) + 1 :] or None


def repo_digest(attrs: dict, image: str) -> str | None:
    """The registry digest ("sha256:…") this local image has in the image's repository."""
    repo = repository(image)
    for entry in attrs.get("RepoDigests") or []:
        name, _, digest = entry.partition("@")
        if name == repo or name.endswith("/" + repo):
            return digest
    return None


def registry_digest(client: CountingClient, image: str) -> str:
    """The digest the registry gives for the image's tag now (Docker asks, with its own credentials)."""
    try:
        with answers(client):
            return client.api.inspect_distribution(image)["Descriptor"]["digest"]
    except refusals() as exc:
        raise RegistryError(f"the registry does not say what {image} is now: {exc.explanation or exc}") from None
    except (KeyError, TypeError):
        raise RegistryError(f"the registry gave no digest for {image}") from None


def pull_digest(client: CountingClient, image: str, digest: str) -> dict:
    """Download repository@digest (the tag on this host does not move); its attributes."""
    ref = f"{repository(image)}@{digest}"
    try:
        with answers(client):
            client.api.pull(ref)
            return client.api.inspect_image(ref)
    except refusals() as exc:
        raise RegistryError(f"cannot download {ref}: {exc.explanation or exc}") from None


def _path_dirs(attrs: dict) -> list[str]:
    env = (attrs.get("Config") or {}).get("Env") or []
    path = next((e.split("=", 1)[1] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    return [d for d in path.split(":") if d.startswith("/")]


def _has_file(client: CountingClient, container_id: str, dirs: list[str], name: str) -> bool | None:
    """Whether NAME is in one of DIRS of a created container."""
    for directory in dirs:
        try:
            status = archive_status(client.api, container_id, f"{directory}/{name}")
        except failures():
            return None
        if status == 200:
            return True
        if status != 404:
            return None
    return False


def _run_once(client: CountingClient, image: str, command: list[str], look_for: tuple[list[str], str] | None = None) -> tuple[int | None, str, bool | None]:
    """Run the image's entrypoint with COMMAND in a throwaway container: no network, no volume.

    Returns the exit code (None when it did not end in time), its output, and whether
    look_for's file exists in the image.
    """
    api = client.api
    host_config = {"NetworkMode": "none", "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges:true"]}
    config = {"Image": image, "Cmd": command, "Labels": {PROBE_LABEL: "1"}, "HostConfig": host_config}
    created = call(client, api.create_container_from_config, config)
    cid = created["Id"]
    try:
        found = _has_file(client, cid, *look_for) if look_for else None
        call(client, api.start, cid)
        try:
            code = api.wait(cid, timeout=PROBE_TIMEOUT).get("StatusCode")
        except failures():
            code = None
        output = call(client, container_log, api, cid, tty=False, limit=PROBE_OUTPUT, keep="first")  # made above without a TTY
        return code, output.decode("utf-8", "replace"), found
    finally:
        try:
            api.remove_container(cid, force=True)
        except failures():
            pass


def probe_image(client: CountingClient, image: str, attrs: dict) -> ImageFacts:
    """Ask the image: `conduit --version`, `conduit start --help`, and is conduit-monitor on its PATH.
    The two runs are side by side: each is mostly the daemon making and starting a container."""
    with ThreadPoolExecutor(2) as pool:
        version = pool.submit(_run_once, client, image, ["--version"])
        help_code, help_text, has_monitor = _run_once(client, image, ["start", "--help"], (_path_dirs(attrs), "conduit-monitor"))
        code, version_text, _ = version.result()
    return from_probe(
        image,
        attrs.get("Id"),
        version_text if code == 0 else "",
        help_text if help_code == 0 else "",
        has_monitor,
    )


# ----------------------------------------------------------------- making what the plan says


def create_volume(client: CountingClient, name: str, cluster: str) -> None:
    """Create a data volume; an existing one (with its key) is left exactly as it is: Docker's create
    answers a volume of that name as it is, labels untouched, so no list call asks first."""
    call(client, client.api.create_volume, name=name, labels={MANAGED_BY: MANAGER, CLUSTER: cluster})


def remove_volume(client: CountingClient, name: str) -> None:
    """Remove a data volume, and the node key in it; one already gone is fine."""
    try:
        client.api.remove_volume(name)
    except not_found():
        return
    except failures() as exc:
        raise diagnose(client.base_url, exc) from None


def create_network(client: CountingClient, name: str, subnet: str | None, cluster: str) -> None:
    import docker.types  # a write: the SDK's types, loaded with the SDK that sends them

    ipam = None
    if subnet:
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
    call(client, client.api.create_network, name, driver="bridge", ipam=ipam, labels={MANAGED_BY: MANAGER, CLUSTER: cluster})


def container_config(props: dict, labels: dict[str, str], image: str) -> dict:
    """Docker's create body for a node from its rendered props. Pure."""
    port_bindings: dict[str, list[dict]] = {}
    for published in props["ports"]:
        host_ip, host_port, target = published.split(":")
        port_bindings[target] = [{"HostIp": host_ip, "HostPort": host_port}]
    volume, target = props["volume"].split(":", 1)
    log_config = props["log_config"]
    host_config = {
        "Binds": [f"{volume}:{target}:rw"],
        "PortBindings": port_bindings,
        "NetworkMode": props["network"],
        "RestartPolicy": {"Name": props["restart_policy"]},
        "Ulimits": [{"Name": "nofile", "Soft": props["ulimit_nofile"], "Hard": props["ulimit_nofile"]}],
        "SecurityOpt": props["security_opt"] or None,
        "CapDrop": props["cap_drop"] or None,
        "ReadonlyRootfs": props["read_only"],
        "LogConfig": {"Type": log_config["type"], "Config": {k: v for k, v in log_config.items() if k != "type"}},
        "NanoCpus": int(round(props["cpus"] * 1e9)),
        # Swap equal to memory: a node that outgrows its limit is restarted, not slowed to a crawl.
        "Memory": props["memory"],
        "MemorySwap": props["memory"],
    }
    config = {
        "Image": image,
        "Cmd": props["command"],
        "Entrypoint": props["entrypoint"],
        "Env": [f"{k}={v}" for k, v in props["env"].items()] or None,
        "Labels": labels,
        "ExposedPorts": {target: {} for target in port_bindings},
        "HostConfig": host_config,
    }
    if props["network"] != "host" and props.get("ip"):
        config["NetworkingConfig"] = {"EndpointsConfig": {props["network"]: {"IPAMConfig": {"IPv4Address": props["ip"]}}}}
    return config


def create_container(client: CountingClient, name: str, props: dict, labels: dict[str, str], image_id: str | None = None) -> str:
    """Create (not start) a container from rendered props; returns its id. `image_id`: the ID of
    props' image_id when that is a repository@digest pulled by this apply (as the next plan sees it)."""
    if image_id is not None:
        props = props | {"image_id": image_id}
        labels = with_config(labels, props)
    config = container_config(props, labels, props.get("image_id") or props["image"])
    return call(client, client.api.create_container_from_config, config, name)["Id"]
