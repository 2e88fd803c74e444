"""The stream renderer is deterministic and puts every container in every upstream exactly once."""

from __future__ import annotations

import re

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.spec.load import load_text
from conduit.render.nginx import insert_include, remove_include, render_nginx, render_stream_conf
from conduit.spec.profiles import HostFacts
from conduit.spec.resolve import nodes
from tests.strategies import valid_specs

BIG_HOST = HostFacts(vcpus=4, memory=8 << 30, nic_mbps=1000, nofile_limit=20000)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINE = "include /etc/nginx/conduit/stream.conf; # managed by conduit"


def load(data: dict):
    return load_text(yaml.safe_dump(data, sort_keys=False), "c.yaml", BIG_HOST)


def upstreams(text: str) -> dict[str, list[str]]:
    return {
        name: [line.strip() for line in body.splitlines() if line.strip().startswith("server ")]
        for name, body in re.findall(r"upstream (\S+) \{\n(.*?)\n    \}", text, re.S)
    }


@given(valid_specs())
@SETTINGS
def test_render_is_deterministic(data):
    doc = load(data)
    assert render_nginx(doc) == render_nginx(load(data))
    if doc.spec.loadbalancer.enabled:
        assert render_stream_conf(doc).encode() == render_stream_conf(doc).encode()
    else:
        assert render_nginx(doc) == []


@given(valid_specs(), st.data())
@SETTINGS
def test_every_container_in_every_upstream_once(data, draw):
    doc = load(data)
    lb = doc.spec.loadbalancer
    if not lb.enabled:
        return
    indexes = [n.index for n in nodes(doc)]
    drained = frozenset(draw.draw(st.sets(st.sampled_from(indexes))))
    found = upstreams(render_stream_conf(doc, drained))
    assert set(found) == {f"conduit_{doc.metadata.name}_{listener.name}" for listener in lb.listeners}
    for listener in lb.listeners:
        servers = found[f"conduit_{doc.metadata.name}_{listener.name}"]
        addresses = [line.split()[1] for line in servers]
        expected = [f"127.0.0.1:{listener.host_port_base + i - 1}" for i in indexes]
        assert addresses == expected  # each once, in index order
        down = [i for i, line in zip(indexes, servers) if line.endswith(" down;")]
        assert down == sorted(drained)


@given(valid_specs())
@SETTINGS
def test_empty_drained_equals_default(data):
    doc = load(data)
    assert render_nginx(doc, frozenset()) == render_nginx(doc)


main_lines = st.sampled_from(
    [
        "user www-data;",
        "load_module modules/ngx_stream_module.so;",
        "include /etc/nginx/modules-enabled/*.conf;",
        "events {",
        "}",
        "http { include /etc/nginx/conf.d/*.conf; }",
        "# a comment {",
        "",
        "include /old/stream.conf; # managed by conduit",
    ]
)


@given(st.lists(main_lines, max_size=12).map(lambda ls: "".join(line + "\n" for line in ls)))
def test_include_edits_are_idempotent(text):
    once = insert_include(text, LINE)
    assert insert_include(once, LINE) == once
    assert once.splitlines().count(LINE) == 1
    assert remove_include(remove_include(once)) == remove_include(once) == remove_include(text)
    if "# managed by conduit" not in text:
        assert remove_include(once) == text
