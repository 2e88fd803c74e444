"""The commented starter spec that `conduit init` writes for the machine it runs on."""

from __future__ import annotations

import re
import socket

from conduit.render.templating import environment
from conduit.spec.image import RECOMMENDED_IMAGE
from conduit.spec.jsonschema import COMMITTED
from conduit.spec.profiles import HostFacts, official_sizing
from conduit.spec.spec import SAFE_NAME, Host
from conduit.spec.units import human_size


def cluster_name(hostname: str) -> str:
    name = re.sub(r"[^a-z0-9_.-]+", "-", hostname.lower()).strip("-._")[:48].strip("-._")
    return name if SAFE_NAME.match(name) else "conduit"


def render_init(facts: HostFacts, hostname: str | None = None) -> str:
    hostname = hostname or socket.gethostname()
    host = Host()  # the spec leaves the reserve to its defaults
    size = official_sizing(facts, host.reserve_cpus, host.reserve_memory, count=None)
    return environment().get_template("cluster-init.yaml.j2").render(
        schema_path=COMMITTED,
        hostname=hostname,
        name=cluster_name(hostname),
        facts=facts,
        memory_h=human_size(facts.memory),
        size=size,
        size_memory=human_size(size.memory).replace(" ", ""),
        reserve_cpus=f"{host.reserve_cpus:g}",
        reserve_memory=human_size(host.reserve_memory),
        image=RECOMMENDED_IMAGE,
    )
