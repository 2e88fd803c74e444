"""The sysctl and tracker renderers are pure: same spec, same bytes; the file says what the resources say."""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.spec.load import load_text
from conduit.render.sysctl import render_sysctl
from conduit.cli.tracker import tracker_run
from conduit.render.tracker import render_tracker, render_tracker_unit, tracker_command, tracker_options
from conduit.tracker.process import settings_for
from conduit.tracker.process import settings as tracker_settings
from conduit.spec.profiles import HostFacts
from tests.helpers import dump
from tests.strategies import valid_specs

FACTS = HostFacts(vcpus=4, memory=8 << 30, nic_mbps=1000, nofile_limit=20000, primary_interface="eth0")
KEY_LINE = re.compile(r"^([a-z0-9_.-]+) = (.+)$")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load(data):
    return load_text(dump(data), "c.yaml", FACTS)


@given(valid_specs())
@SETTINGS
def test_renderers_are_deterministic(data):
    first, second = load(data), load(data)
    assert render_sysctl(first) == render_sysctl(second)
    assert render_tracker(first) == render_tracker(second)
    assert render_tracker_unit(first, "conduit", "/var/lib/conduit") == render_tracker_unit(
        second, "conduit", "/var/lib/conduit"
    )


@given(valid_specs())
@SETTINGS
def test_sysctl_file_lines_equal_the_sysctl_resources(data):
    doc = load(data)
    resources = render_sysctl(doc)
    keys = {r.id: r.props["value"] for r in resources if r.kind == "sysctl"}
    files = [r for r in resources if r.kind == "sysctl_file"]
    if not keys:
        assert resources == []
        return
    (file,) = files
    lines = file.props["content"].splitlines()
    assert lines[0] == f"# Managed by conduit for cluster {doc.metadata.name}."
    pairs = [m.groups() for m in map(KEY_LINE.match, lines) if m]
    assert [k for k, _ in pairs] == sorted(keys)
    assert dict(pairs) == keys
    for key, value in data["spec"]["sysctl"].get("overrides", {}).items():
        assert keys[key] == str(value)
    # Everything that is not a key line is a comment or blank: nothing else reaches the kernel.
    assert all(KEY_LINE.match(line) or line == "" or line.startswith("# ") for line in lines)


@given(valid_specs())
@SETTINGS
def test_tracker_command_is_all_strings_and_names_the_cluster(data):
    doc = load(data)
    resources = render_tracker(doc)
    if not data["spec"]["tracker"]["enabled"]:
        assert resources == []
        return
    (res,) = resources
    cmd = res.props["command"]
    assert all(isinstance(a, str) for a in cmd) and res.props["running"] is True
    assert cmd[cmd.index("--cluster") + 1] == doc.metadata.name
    included = cmd[cmd.index("--filter") + 1].partition(" and not ")[0]
    assert "443" not in included


trackers = st.fixed_dictionaries({
    "interface": st.sampled_from(["auto", "eth0", "ens3"]),
    "source": st.sampled_from(["auto", "metrics", "capture"]),
    "ports": st.sampled_from(["1024-65535", "5000", "2000-3000,40000-50000"]),
    "exclude_ports": st.lists(st.integers(1, 65535), max_size=3),
    "sample_seconds": st.integers(1, 300),
    "interval_seconds": st.integers(10, 86400),
    "snaplen": st.integers(64, 1500),
    "geoip": st.booleans(),
    "retention_days": st.integers(1, 3650),
    "keep_addresses_hours": st.integers(0, 168),
})


@given(valid_specs(), trackers)
@SETTINGS
def test_the_hosted_trackers_settings_are_what_its_command_line_gives(data, tracker):
    """`conduit serve --watch` runs the tracker in its own process with settings_for(spec); apply runs
    `conduit tracker run` with tracker_command(spec): both must sample the same way."""
    data["spec"]["tracker"] = {"enabled": True, **tracker}
    doc = load(data)
    argv = tracker_command(doc)
    assert argv[:3] == ["conduit", "tracker", "run"]
    parsed = tracker_run.make_context("run", argv[3:]).params  # the command line as `conduit tracker run` reads it
    assert parsed == tracker_options(doc)
    assert tracker_settings(**parsed) == settings_for(doc)
    assert settings_for(doc).geoip is tracker["geoip"] and settings_for(doc).interval == tracker["interval_seconds"]
