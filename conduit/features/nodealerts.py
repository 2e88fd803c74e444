"""What the nodes themselves say that an operator must hear about, once until it clears.

- `WARNING: A newer version of Conduit is required. Please upgrade.` in a node's current run
  (Psiphon-Inc/conduit release-cli-2.0.0 cli/internal/conduit/service.go:431-432): only a new
  image helps. It clears when the node runs without it (after the image was changed).
- A container that runs conduit-monitor while no conduit in it serves (the monitor restarts
  a conduit that exits, every 5 s: scripts/monitor/main.go:346-352): Docker sees nothing
  wrong, so the crash-loop alert of the plan never fires. Given a grace period after start.
- A node that planted a link or a special file where the tool reads its volume
  (conduit.drivers.volume): it may be compromised.
"""

from __future__ import annotations

import time

from conduit.drivers.dockerapi import failures
from conduit.execute import nodehealth
from conduit.facts import nodelog
from conduit.spec.resolve import nodes
from conduit.spec.spec import ClusterSpec

GRACE_SECONDS = 30.0  # a node's metrics may take this long to answer after a start


def _age(started_at: str, now: float) -> float:
    when = nodelog.instant(started_at)
    return 0.0 if when is None else now - when[0]


def node_problems(spec: ClusterSpec, client, now: float | None = None) -> dict[str, str]:
    """{key: message} for every node that logged the newer-version warning, is dead under its monitor,
    or planted a link or a special file in its volume."""
    if client is None:
        return {}
    now = time.time() if now is None else now
    out: dict[str, str] = {}
    for node in nodes(spec):
        try:
            shape, reading = nodehealth.observe(client, node.name, node.metrics_port, with_log=True)
        except failures():
            continue
        if reading.hostile is not None:
            out[f"compromised:{node.name}"] = reading.hostile.alert
        if not reading.running:
            continue  # stopped or crash-looping: the plan's own alerts say so
        if nodelog.upgrade_required(reading.log):
            out[f"upgrade:{node.name}"] = f"node {node.name}: the network requires a newer version of Conduit (it logged the upgrade warning); update containers.image"
        verdict = nodehealth.judge(node.name, node.max_clients, node.metrics_port, shape, reading)
        if verdict.dead and _age(reading.started_at, now) >= GRACE_SECONDS:
            out[f"dead:{node.name}"] = f"node {node.name} is dead: {verdict.reason}"
    return out
