"""The commented starter spec that `conduit init` writes for the machine it runs on."""

from __future__ import annotations

import re
import socket

from conduit.render.templating import environment
from conduit.spec.image import RECOMMENDED_IMAGE
from conduit.spec.jsonschema import COMMITTED
from conduit.spec.profiles import HostFacts, official_sizing
from conduit.spec.spec import SAFE_NAME
from conduit.spec.units import format_size


def cluster_name(hostname: str) -> str:
    name = re.sub(r"[^a-z0-9_.-]+", "-", hostname.lower()).strip("-._")[:48].strip("-._")
    return name if SAFE_NAME.match(name) else "conduit"


def render_init(facts: HostFacts, hostname: str | None = None) -> str:
    hostname = hostname or socket.gethostname()
    size = official_sizing(facts, reserve_cpus=0.2, reserve_memory=512 << 20, count=None)
    return environment().get_template("cluster-init.yaml.j2").render(
        schema_path=COMMITTED,
        hostname=hostname,
        name=cluster_name(hostname),
        facts=facts,
        memory_h=format_size(facts.memory // (1 << 20) * (1 << 20)),
        size=size,
        size_memory=format_size(size.memory),
        image=RECOMMENDED_IMAGE,
    )
