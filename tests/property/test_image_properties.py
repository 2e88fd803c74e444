"""Properties of image facts: the renderer never passes a flag the image lacks, and the spec
accepts exactly what every CLI accepts."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from conduit.errors import SpecError
from conduit.spec.load import load_text
from conduit.render.container import container_props
from conduit.spec.image import PROFILES, ImageFacts, parse_start_help
from conduit.spec.image_checks import image_checks
from conduit.spec.resolve import node_settings, with_image_facts
from tests.helpers import SMALL_VPS, dump, minimal
from tests.strategies import conduit_settings

MONITOR_FLAGS = {"traffic-limit", "traffic-period", "bandwidth-threshold", "min-connections", "min-bandwidth", "data-dir", "metrics-addr"}


def facts_of(name: str) -> ImageFacts:
    p = PROFILES[name]
    return ImageFacts("img", "image", p.version, p.build, p.flags, exact=True, has_monitor=p.has_monitor)


def long_flags(args: list[str]) -> set[str]:
    return {a[2:].split("=", 1)[0] for a in args if a.startswith("--") and a != "--"}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(PROFILES)), conduit_settings(), st.sampled_from(["host", "bridge"]))
def test_rendered_flags_are_all_flags_the_image_lists(name, conduit, mode):
    text = dump(minimal(
        containers={"count": 2, "image": "registry.example/conduit:latest", "resources": {"cpus": 0.2, "memory": "256MiB"}},
        network={"mode": mode}, conduit=conduit,
    ))  # fmt: skip
    doc = with_image_facts(load_text(text, "c.yaml", SMALL_VPS), facts_of(name))
    if image_checks(doc, facts_of(name)):
        return  # refused at plan: never rendered onto a host
    props = container_props(doc, node_settings(doc, 2))
    command = props["command"]
    if props["entrypoint"] == ["conduit-monitor"]:
        assert PROFILES[name].has_monitor
        split = command.index("--")
        assert long_flags(command[:split]) <= MONITOR_FLAGS
        command = command[split + 1 :]
    assert long_flags(command) <= PROFILES[name].flags
    assert command[command.index("-m") + 1] == str(conduit["max_clients"])


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_bandwidth_is_accepted_exactly_when_every_cli_accepts_it(value):
    text = dump(minimal(containers={"count": 1, "resources": {"cpus": 0.2, "memory": "256MiB"}}, conduit={"max_clients": 10, "bandwidth_mbps": value}))
    accepted = value == -1 or (math.isfinite(value) and value >= 1)
    try:
        load_text(text, "c.yaml", SMALL_VPS)
    except SpecError as exc:
        assert not accepted, exc.lines()
    else:
        assert accepted


@given(st.sets(st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True), min_size=1, max_size=12), st.data())
def test_help_parser_reads_back_any_flag_list(names, data):
    lines = []
    for name in sorted(names):
        short = data.draw(st.sampled_from(["", "-x, "]))
        kind = data.draw(st.sampled_from(["", " int", " string", ' string[="stats.json"]', " stringArray"]))
        lines.append(f"  {short or '    '}--{name}{kind}   some usage -- with --dashes (default 1)")
    text = "Usage:\n  conduit start [flags]\n\nFlags:\n" + "\n".join(lines) + "\n"
    assert parse_start_help(text) == frozenset(names)
