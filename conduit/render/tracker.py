"""Desired per-country traffic tracker: the argv of the supervised process, and its systemd unit."""

from __future__ import annotations

import shlex
from pathlib import Path

from conduit.spec.resources import Resource
from conduit.render.templating import environment
from conduit.spec.spec import ClusterSpec, Tracker

MAX_PORT = 65535


def unit_name(cluster: str) -> str:
    return f"conduit-tracker-{cluster}"


def _port_terms(ports: str) -> list[str]:
    terms: list[str] = []
    for part in ports.split(","):
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if not 1 <= first <= MAX_PORT or not 1 <= last <= MAX_PORT:
            raise ValueError(f"spec.tracker.ports: {part!r} is outside 1-{MAX_PORT}")
        if first > last:
            raise ValueError(f"spec.tracker.ports: {part!r} runs backwards")
        terms.append(f"port {first}" if first == last else f"portrange {first}-{last}")
    return terms


def capture_filter(tracker: Tracker) -> str:
    """BPF filter for the sampled capture.

    Conduit serves each client over WebRTC on a fresh random UDP port, so the capture
    counts UDP on the configured (ephemeral) ranges; DNS and the broker's 443 are excluded
    because they are the node's own traffic, not its clients'.
    """
    included = " or ".join(_port_terms(tracker.ports))
    text = f"udp and ({included})"
    excluded = sorted(set(tracker.exclude_ports))
    if excluded:
        text += " and not (" + " or ".join(f"port {p}" for p in excluded) + ")"
    return text


def metrics_ports(spec: ClusterSpec) -> str:
    """The nodes' metrics ports on 127.0.0.1, where per-country figures of 2.x nodes come from."""
    first = spec.spec.conduit.metrics_port_base
    return f"{first}-{first + (spec.spec.containers.count or 1) - 1}"


def tracker_options(spec: ClusterSpec) -> dict[str, str | int | bool]:
    """`conduit tracker run`'s sampling options for the spec, by the command's parameter names: the one place
    its command line (tracker_command) and the hosted tracker's settings (conduit.tracker.process.settings_for) come from."""
    t = spec.spec.tracker
    return {
        "metrics_ports": metrics_ports(spec),
        "interface": t.interface,
        "source": t.source,
        "capture_filter": capture_filter(t),
        "sample_seconds": t.sample_seconds,
        "interval_seconds": t.interval_seconds,
        "snaplen": t.snaplen,
        "retention_days": t.retention_days,
        "keep_addresses_hours": t.keep_addresses_hours,
        "no_geoip": not t.geoip,
    }


FLAGS = {"capture_filter": "--filter"}  # an option whose flag is not its name


def tracker_command(spec: ClusterSpec, conduit_bin: str = "conduit") -> list[str]:
    argv = [conduit_bin, "tracker", "run", "--cluster", spec.metadata.name]  # names the process, not a setting
    for name, value in tracker_options(spec).items():
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv


def render_tracker(spec: ClusterSpec, conduit_bin: str = "conduit") -> list[Resource]:
    if not spec.spec.tracker.enabled:
        return []
    return [Resource("tracker", "tracker", {"command": tracker_command(spec, conduit_bin), "running": True})]


def _systemd_escape(text: str) -> str:
    """systemd expands %specifiers and $VARIABLES in these lines even inside quotes."""
    return text.replace("%", "%%").replace("$", "$$")


def render_tracker_unit(spec: ClusterSpec, conduit_bin: str, state_dir: str | Path) -> str:
    return tracker_unit(spec.metadata.name, tracker_command(spec, conduit_bin), state_dir)


def tracker_unit(cluster: str, argv: list[str], state_dir: str | Path) -> str:
    """The tracker's systemd unit running `argv` (its rendered command, with conduit's absolute path)."""
    template = environment().get_template("conduit-tracker.service.j2")
    return template.render(
        cluster=cluster,
        exec_start=_systemd_escape(shlex.join(argv)),
        state_dir=_systemd_escape(shlex.quote(str(state_dir))),
    )
