"""The capacity advisor: what a spec asks of the host, against Psiphon's guidance and what the host has.

Refusals are what the host cannot give: more CPUs than it has, more memory than it has after its
reserve, a node below the least it runs with. Warnings are past Psiphon's guidance of 150-350
clients per CPU and per 2 GB. The summary says what the spec serves and what the host carries.
The loaded spec keeps all of it (Capacity), with the sizing it leaves to defaults counted from the
whole host, which another cluster on the same host counts again (shared_host).
Every message is one line that names the field the user wrote (or says the value is the default
share) and what to change. CPUs are counted in thousandths and memory in bytes, so that the
sums are exact; both are shown as people read them (0.45 CPU, 1.5 GiB).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from conduit.spec.profiles import (
    GUIDANCE_HIGH,
    GUIDANCE_LOW,
    MAX_CLIENTS_PER_NODE,
    MIN_NODE_CPUS,
    MIN_NODE_MEMORY,
    MIB,
    UNIT_MEMORY,
    millicpus,
)
from conduit.spec.resolve import NodeSettings, nodes
from conduit.spec.spec import ClusterSpec
from conduit.spec.units import human_size

Path = tuple[str | int, ...]
Issue = tuple[Path, str]

_COUNT: Path = ("spec", "containers", "count")
_MAX_CLIENTS: Path = ("spec", "conduit", "max_clients")
_PROFILE: Path = ("spec", "host", "profile")


@dataclass(frozen=True)
class Advice:
    summary: list[str]
    warnings: list[Issue]
    refusals: list[Issue]
    host_sized: tuple[str, ...]  # the fields _host_sized names


@dataclass(frozen=True)
class Capacity:
    """What the advisor says of a loaded spec (conduit.spec.load): what it serves and what the host
    carries, the warnings past Psiphon's guidance, located in the spec's file, and the sizing fields
    it leaves to defaults counted from the whole host."""

    summary: list[str]
    warnings: list[str]
    host_sized: tuple[str, ...] = ()


def capacity(spec: ClusterSpec) -> Capacity:
    """The advice the loader found for `spec` (none for a spec made otherwise)."""
    found = spec._capacity
    return found if isinstance(found, Capacity) else Capacity([], [])


def _cpus(milli: int) -> str:
    value = milli / 1000
    return f"{value:g} CPU{'s' if value > 1 else ''}"


@dataclass(frozen=True)
class _Kind:
    """One resource a node is limited in, in whole units (thousandths of a CPU, bytes)."""

    name: str  # the spec field: cpus or memory
    minimum: int
    why_minimum: str
    per: int  # the amount Psiphon's guidance counts clients per: 1 CPU, 2 GB
    per_text: str
    show: Callable[[int], str]
    typed: Callable[[int], str]  # as the spec takes it, rounded down: a ceiling to lower a value to
    typed_up: Callable[[int], str]  # rounded up: a floor to raise a value to
    value: Callable[[NodeSettings], int]
    host: int  # what the host has
    room: int  # what is left after the host's reserve

    def share(self, count: int) -> int:
        """The default even share of `count` nodes (conduit.spec.profiles.even_share)."""
        share = self.room // count
        return share // MIB * MIB if self.name == "memory" else share


def _kinds(spec: ClusterSpec) -> tuple[_Kind, _Kind]:
    host = spec.spec.host
    return (
        _Kind("cpus", millicpus(MIN_NODE_CPUS), "Docker takes no less", 1000, "CPU", _cpus,
              lambda v: f"{v / 1000:g}", lambda v: f"{math.ceil(v / 10) / 100:g}", lambda n: millicpus(n.cpus),
              millicpus(float(host.vcpus)), millicpus(float(host.vcpus)) - millicpus(host.reserve_cpus)),
        _Kind("memory", MIN_NODE_MEMORY, "a Conduit process needs that to start", UNIT_MEMORY, "2 GiB", human_size,
              human_size, lambda v: human_size(v, up=True), lambda n: n.memory,
              int(host.memory), int(host.memory) - host.reserve_memory),
    )  # fmt: skip


class _Spec:
    """The spec as written (to tell a value the user set from a default) and as resolved."""

    def __init__(self, given: ClusterSpec, resolved: ClusterSpec) -> None:
        self.given = given
        self.nodes = nodes(resolved)
        self.count = len(self.nodes)
        self.official = resolved.spec.host.profile == "official"
        self.kinds = _kinds(resolved)

    def source(self, node: NodeSettings, name: str) -> Path | None:
        """Where the user wrote this node's value, or None when it is the default."""
        containers = self.given.spec.containers
        over = containers.overrides.get(node.index)
        if over is not None and getattr(over, name) is not None:
            return ("spec", "containers", "overrides", node.index, name)
        if name == "max_clients":
            return _MAX_CLIENTS if self.given.spec.conduit.max_clients is not None else None
        return ("spec", "containers", "resources", name) if getattr(containers.resources, name) is not None else None

    def first_source(self, name: str) -> Path | None:
        return next((p for p in (self.source(n, name) for n in self.nodes) if p is not None), None)

    @property
    def count_given(self) -> bool:
        return self.given.spec.containers.count is not None

    def fitting(self, kind: _Kind, limit: int) -> int:
        """How many of the first nodes fit in `limit`, each with its value as now."""
        total, fit = 0, 0
        for node in self.nodes:
            total += kind.value(node)
            if total > limit:
                break
            fit += 1
        return fit


def advise(given: ClusterSpec, resolved: ClusterSpec) -> Advice:
    spec = _Spec(given, resolved)
    refusals: list[Issue] = []
    warnings: list[Issue] = []
    for kind in spec.kinds:
        refused = _below_minimum(spec, kind) or _over_host(spec, kind)
        refusals += refused
        if not refused:
            warnings += _over_reserve(spec, kind) + _past_guidance(spec, kind)
    return Advice([] if refusals else _summary(spec), warnings, refusals, _host_sized(spec))


def _host_sized(spec: _Spec) -> tuple[str, ...]:
    """The sizing fields (as written under `spec:`) some node takes from a default counted from the
    whole machine (conduit.spec.profiles): the official profile's even share and clients, the
    cluster-v2 profile's CPU share (its memory and clients per node are fixed), and the count they
    give. A host the spec describes itself (`host.vcpus`, `host.memory`) is taken for this cluster's part
    of the machine: what is sized from it is not counted as the whole machine's."""
    host = spec.given.spec.host
    machine = {"cpus": host.vcpus == "auto", "memory": host.memory == "auto"}
    machine["max_clients"] = machine["cpus"] or machine["memory"]
    count_from_machine = machine["max_clients"] if spec.official else machine["memory"]
    paths = [] if spec.count_given or not count_from_machine else [_COUNT]
    for name in ("cpus", "memory", "max_clients") if spec.official else ("cpus",):
        if machine[name] and any(spec.source(node, name) is None for node in spec.nodes):
            paths.append(_MAX_CLIENTS if name == "max_clients" else ("spec", "containers", "resources", name))
    return tuple(".".join(map(str, path[1:])) for path in paths)


def shared_host(other: str, nodes: int, host_sized: tuple[str, ...]) -> str:
    """The warning for a spec sized by default for the whole machine, when cluster `other` has `nodes`
    nodes on that host too: both count the host as their own."""
    fields = " and ".join(filter(None, (", ".join(host_sized[:-1]), host_sized[-1])))
    them = "them" if len(host_sized) > 1 else "it"
    defaults = "defaults" if len(host_sized) > 1 else "a default"
    return (f"cluster {other} has {_nodes(nodes)} on this host too, but this spec leaves {fields} to {defaults} "
            f"sized for the whole host: set {them}, or host.vcpus and host.memory, to this cluster's part of the host "
            "so that both clusters fit")  # fmt: skip


# ------------------------------------------------------------------ refusals


def _below_minimum(spec: _Spec, kind: _Kind) -> list[Issue]:
    node = next((n for n in spec.nodes if kind.value(n) < kind.minimum), None)
    if node is None:
        return []
    path = spec.source(node, kind.name)
    least = f"the {kind.show(kind.minimum)} a node needs ({kind.why_minimum})"
    if path is not None:
        return [(path, f"{kind.show(kind.value(node))} is below {least}; raise {kind.name} to {kind.typed_up(kind.minimum)}")]
    reserve: Path = ("spec", "host", f"reserve_{kind.name}")
    if kind.room < kind.minimum:
        return [(reserve, f"the host has {kind.show(kind.host)} and host.reserve_{kind.name} keeps "
                          f"{kind.show(kind.host - kind.room)} of it: too little is left for one node; lower reserve_{kind.name}")]
    fit = kind.room // kind.minimum
    return [(_COUNT if spec.count_given else reserve,
             f"{spec.count} nodes would get {kind.show(kind.value(node))} each (the default even share of the "
             f"{kind.show(kind.room)} left after the reserve), below {least}; lower count to {fit}")]  # fmt: skip


def _over_host(spec: _Spec, kind: _Kind) -> list[Issue]:
    """CPU limits may not add up to more than the host's CPUs, memory limits not to more than its memory
    after the reserve (memory is not shared: the kernel kills a node that runs out)."""
    total = sum(kind.value(n) for n in spec.nodes)
    limit = kind.host if kind.name == "cpus" else kind.room
    if total <= limit:
        return []
    where = "the host's" if kind.name == "cpus" else f"the {kind.show(kind.room)} left after host.reserve_memory of the host's"
    return [(spec.first_source(kind.name) or _COUNT,
             f"{spec.count} nodes ask for {kind.show(total)} in all, more than {where} {kind.show(kind.host)}; "
             + _fit_actions(spec, kind, kind.room))]  # fmt: skip


def _fit_actions(spec: _Spec, kind: _Kind, limit: int) -> str:
    actions = [("lower", f"{kind.name} to {kind.typed(kind.share(spec.count))}")] if kind.share(spec.count) >= kind.minimum else []
    fit = spec.fitting(kind, limit)
    if 0 < fit < spec.count:
        actions.append(("lower", f"count to {fit}"))
    return _either(actions) or f"lower {kind.name}"


def _either(actions: list[tuple[str, str]]) -> str:
    """[("lower", "count to 8"), ("lower", "max_clients to 300")] -> "lower count to 8 or max_clients to 300"."""
    words, verb = [], None
    for action_verb, rest in actions:
        words.append(rest if action_verb == verb else f"{action_verb} {rest}")
        verb = action_verb
    return " or ".join(words)


# ------------------------------------------------------------------ warnings


def _over_reserve(spec: _Spec, kind: _Kind) -> list[Issue]:
    """CPU limits past the reserve: the nodes compete with the OS, nginx and the tracker."""
    total = sum(kind.value(n) for n in spec.nodes)
    if kind.name != "cpus" or total <= kind.room:
        return []
    return [(spec.first_source("cpus") or _COUNT,
             f"{spec.count} nodes ask for {kind.show(total)} in all, more than the {kind.show(kind.room)} left after "
             f"host.reserve_cpus: they compete with the OS, nginx and the tracker; " + _fit_actions(spec, kind, kind.room))]  # fmt: skip


def _ratio(node: NodeSettings, kind: _Kind) -> float:
    return node.max_clients * kind.per / kind.value(node)


def _past_guidance(spec: _Spec, kind: _Kind) -> list[Issue]:
    node = max(spec.nodes, key=lambda n: _ratio(n, kind), default=None)
    if node is None or _ratio(node, kind) <= GUIDANCE_HIGH:
        return []
    own = spec.source(node, kind.name)
    clients = spec.source(node, "max_clients")
    path = clients or own or (_COUNT if spec.count_given else _MAX_CLIENTS if spec.official else _PROFILE)
    value = kind.value(node)
    share = "" if own else " (the default even share)" if spec.official else " (the cluster-v2 profile's)"
    return [(path,
             f"{node.max_clients} clients on {kind.show(value)}{share} per node is {_ratio(node, kind):.0f} clients per "
             f"{kind.per_text}, past Psiphon's guidance of {GUIDANCE_LOW}-{GUIDANCE_HIGH}; "
             + _guidance_actions(spec, kind, node, own is not None, clients is not None))]  # fmt: skip


def _guidance_actions(spec: _Spec, kind: _Kind, node: NodeSettings, own: bool, clients_given: bool) -> str:
    actions = []
    if not own and spec.official and spec.count > 1:
        fit = next((k for k in range(spec.count - 1, 0, -1) if node.max_clients * kind.per <= GUIDANCE_HIGH * kind.share(k)), 0)
        if fit:
            actions.append(("lower", f"count to {fit}"))
    most = GUIDANCE_HIGH * kind.value(node) // kind.per
    if most >= 1:
        actions.append(("lower" if clients_given else "set", f"max_clients to {most}"))
    if own:
        actions.append(("raise", f"{kind.name} to {kind.typed_up(math.ceil(node.max_clients * kind.per / GUIDANCE_HIGH))}"))
    return _either(actions) or f"give the nodes more {kind.per_text.split()[-1]}"


# ------------------------------------------------------------------ summary


def _span(values: list[int], show: Callable[[int], str]) -> str:
    low, high = min(values), max(values)
    return show(low) if low == high else f"{show(low)} to {show(high)}"


def _nodes(count: int) -> str:
    return f"{count} node{'s' if count != 1 else ''}"


def _summary(spec: _Spec) -> list[str]:
    cpus, memory = spec.kinds
    clients = [n.max_clients for n in spec.nodes]
    defaults = [k.name for k in spec.kinds if spec.first_source(k.name) is None]
    share = f" ({' and '.join(defaults)}: the default even share)" if defaults else ""
    per_cpu = max(_ratio(n, cpus) for n in spec.nodes)
    per_memory = max(_ratio(n, memory) for n in spec.nodes)
    units = max(0.0, min(cpus.room / 1000, memory.room / UNIT_MEMORY))
    low, high = round(GUIDANCE_LOW * units), round(GUIDANCE_HIGH * units)
    most = min(cpus.room // cpus.minimum, memory.room // memory.minimum)
    return [
        f"capacity: {_nodes(spec.count)} x {_span(clients, str)} clients = {sum(clients)} clients, "
        f"each node {_span([cpus.value(n) for n in spec.nodes], cpus.show)} and "
        f"{_span([memory.value(n) for n in spec.nodes], memory.show)}{share}: {per_cpu:.0f} clients per CPU and "
        f"{per_memory:.0f} per 2 GiB of memory (Psiphon: {GUIDANCE_LOW}-{GUIDANCE_HIGH} per CPU and 2 GB)",
        f"capacity: this host has {cpus.show(cpus.room)} and {memory.show(memory.room)} after its reserve: {low}-{high} clients "
        f"by Psiphon's guidance, which {_nodes(max(1, math.ceil(high / MAX_CLIENTS_PER_NODE)))} can serve (a node takes up to "
        f"{MAX_CLIENTS_PER_NODE}); at most {most} nodes fit, at the least a node runs with ({cpus.show(cpus.minimum)}, {memory.show(memory.minimum)})",
    ]
