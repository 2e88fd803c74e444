"""Checks that depend on what the image speaks: what the real `conduit start` of that version
and build would refuse, so a node is never created to crash at start.

Each check refuses only what the facts say for certain (ImageFacts.supports is False); what
cannot be told without the image is left to `plan`, which asks the image. Rules and their
upstream sources (Psiphon-Inc/conduit tags release-cli-*, ssmirr/conduit master):

- 1.x: max clients at least 1 ("max-clients must be between 1 and 1000", 1.5 cli/cmd/start.go:97-99;
  1.1 and 1.2 silently use 50 for 0, internal/config/config.go:91-94).
- 2.0: max common clients and max personal clients not both 0 (2.0 internal/config/config.go:224-227).
- personal clients: --max-personal-clients exists from 2.0 only (2.0 cli/cmd/start.go:66).
- data caps: conduit-monitor is in the official image from 1.5.0 (1.5 cli/Dockerfile:22), not in
  the community build (ssmirr cli/Dockerfile).
- reduced hours: --set exists from 2.0 only (2.0 cli/cmd/start.go:68); InproxyReducedMaxCommonClients
  at most the node's max common clients (psiphon-tunnel-core psiphon/config.go, Commit).
- --idle-restart: the community build only (ssmirr cli/cmd/start.go:74).
- extra_args: an unknown flag makes cobra exit ("unknown flag"), so each must be listed by
  the image's `conduit start --help`; the values of --set, --compartment-id (2.0) and
  --idle-restart (community) are checked as the CLI checks them (conduit.spec.start_args).
"""

from __future__ import annotations

from conduit.spec.image import COMMUNITY, ImageFacts
from conduit.spec.resolve import nodes
from conduit.spec.spec import ClusterSpec, go_duration_seconds
from conduit.spec.start_args import compartment_input_problem, flag_values, set_problem

Path = tuple[str | int, ...]
Issue = tuple[Path, str]

CONDUIT: Path = ("spec", "conduit")


def field_path(spec: ClusterSpec, index: int, name: str, base: Path) -> Path:
    """Point at the override when one sets this field, else at the shared field."""
    over = spec.spec.containers.overrides.get(index)
    if over is not None and getattr(over, name) is not None:
        return ("spec", "containers", "overrides", index, name)
    return base


def image_checks(spec: ClusterSpec, facts: ImageFacts) -> list[Issue]:
    return (
        _client_checks(spec, facts)
        + _capability_checks(spec, facts)
        + _reduced_checks(spec, facts)
        + _extra_arg_checks(spec, facts)
        + _extra_value_checks(spec, facts)
    )


def _client_checks(spec: ClusterSpec, facts: ImageFacts) -> list[Issue]:
    conduit = spec.spec.conduit
    issues: list[Issue] = []
    if conduit.max_personal_clients is not None and facts.has_personal is False:
        issues.append(
            (CONDUIT + ("max_personal_clients",), f"{facts.image} is {facts.describe()}: personal clients need a 2.0 image")
        )
    personal = conduit.max_personal_clients or 0 if facts.has_personal else 0
    for n in nodes(spec):
        where = field_path(spec, n.index, "max_clients", CONDUIT + ("max_clients",))
        if facts.cli == "1.x" and n.max_clients < 1:
            return issues + [(where, "a 1.x CLI needs at least 1 client (max-clients must be between 1 and 1000)")]
        if facts.cli == "2.x" and n.max_clients == 0 and personal == 0:
            return issues + [
                (where, "0 common clients and no personal clients: the CLI refuses to start (at least one of "
                 "--max-common-clients or --max-personal-clients must be greater than 0)")
            ]  # fmt: skip
    return issues


# A setting, the capability of the image it needs, and why it cannot be had without it.
NEEDS_CAPABILITY = (
    ("data_cap", "has_monitor", ", which has no conduit-monitor: a data cap needs an official image 1.5.0 or later"),
    ("idle_restart", "has_idle_restart", ": --idle-restart exists only in the community build (ghcr.io/ssmirr/conduit/conduit)"),
)


def _capability_checks(spec: ClusterSpec, facts: ImageFacts) -> list[Issue]:
    """A setting the image is known not to have (unknown is `plan`'s to ask)."""
    return [
        (CONDUIT + (setting,), f"{facts.image} is {facts.describe()}{why}")
        for setting, capability, why in NEEDS_CAPABILITY
        if getattr(spec.spec.conduit, setting) is not None and getattr(facts, capability) is False
    ]


def _reduced_checks(spec: ClusterSpec, facts: ImageFacts) -> list[Issue]:
    reduced = spec.spec.conduit.reduced_hours
    if reduced is None:
        return []
    if facts.has_set is False:
        return [(CONDUIT + ("reduced_hours",), f"{facts.image} is {facts.describe()}: reduced hours need a 2.0 image (--set)")]
    for n in nodes(spec):
        if reduced.max_clients > n.max_clients:
            return [
                (
                    CONDUIT + ("reduced_hours", "max_clients"),
                    f"{reduced.max_clients} is more than the {n.max_clients} max clients of {n.name}; "
                    "reduced hours may only lower it",
                )
            ]
    return []


def flag_name(arg: str) -> str | None:
    """"--geo" and "--set=a=b" -> "geo", "set"; values and short flags -> None."""
    if not arg.startswith("--") or arg == "--":
        return None
    return arg[2:].split("=", 1)[0]


def _extra_arg_checks(spec: ClusterSpec, facts: ImageFacts) -> list[Issue]:
    if not facts.exact or facts.flags is None:
        return []
    issues: list[Issue] = []
    for i, arg in enumerate(spec.spec.conduit.extra_args):
        name = flag_name(arg)
        if name is not None and name not in facts.flags:
            hint = " (the community build's flag)" if name in ("geo", "idle-restart") and facts.build != COMMUNITY else ""
            issues.append(
                (CONDUIT + ("extra_args", i), f"--{name} is not a flag of {facts.describe()}'s conduit start{hint}; it would exit at start")
            )
    return issues


def _idle_restart_problem(value: str) -> str | None:
    seconds = go_duration_seconds(value)
    if seconds is None:
        return f'invalid idle-restart duration "{value}" (use format like 30m, 1h, 2h)'
    return "idle-restart must be at least 30m" if seconds < 30 * 60 else None


_VALUE_CHECKS = (
    ("set", "has_set", set_problem),
    ("compartment-id", "has_compartment", compartment_input_problem),
    ("idle-restart", "has_idle_restart", _idle_restart_problem),
)


def _extra_value_checks(spec: ClusterSpec, facts: ImageFacts) -> list[Issue]:
    """Values the image's `conduit start` would refuse, for the flags it surely has."""
    issues: list[Issue] = []
    checks = {name: check for name, capability, check in _VALUE_CHECKS if getattr(facts, capability)}
    for i, name, value in flag_values(list(spec.spec.conduit.extra_args)):
        check = checks.get(name)
        if check is None:
            continue
        problem = f"flag needs an argument: --{name}" if value is None else check(value)
        if problem:
            issues.append((CONDUIT + ("extra_args", i), f"--{name}: {problem}; conduit start would exit"))
    return issues
