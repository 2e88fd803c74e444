"""The sysctl driver against the real kernel: read-only on the host, writes only inside a fresh network namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conduit.drivers.sysctl import observe_sysctl
from conduit.spec.load import load_text
from conduit.render.sysctl import render_sysctl
from conduit.spec.profiles import normalise_sysctl
from harness import need, unavailable
from tests.helpers import SMALL_VPS, dump, minimal

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NETNS_KEYS = {"net.core.somaxconn": "4321", "net.ipv4.ip_local_port_range": "20000 50000"}




def load(front: bool = False, **sysctl):
    spec: dict = {"sysctl": {"profile": "conduit", "on_refused": "warn", **sysctl}}
    if front:
        spec["network"] = {"mode": "bridge"}
        spec["loadbalancer"] = {
            "enabled": True,
            "listeners": [{"name": "t", "port": 1443, "backend_port": 443, "host_port_base": 21000}],
        }
    return load_text(dump(minimal(**spec)), "c.yaml", SMALL_VPS)


def host_value(sysctl_bin: str, key: str) -> str | None:
    done = subprocess.run([sysctl_bin, "-n", key], capture_output=True, text=True, check=False)
    return normalise_sysctl(done.stdout) if done.returncode == 0 else None


@pytest.mark.parametrize("profile,front", [("conduit", True), ("conduit", False), ("cluster-v2", False)])
def test_driver_agrees_with_sysctl_on_the_real_kernel(profile, front):
    sysctl_bin = need("sysctl")
    doc = load(profile=profile, front=front)
    keys = [r.id for r in render_sysctl(doc) if r.kind == "sysctl"]
    assert ("net.core.somaxconn" in keys) == (front or profile == "cluster-v2")
    obs = observe_sysctl(doc, Path("/"), keys)
    seen = {r.id: host_value(sysctl_bin, r.id) for r in obs.resources}
    if any(r.props["value"] != seen[r.id] for r in obs.resources):
        # Read once more: a test beside this one may start a Docker daemon, which loads nf_conntrack
        # (and so its keys) once, between the two reads.
        obs = observe_sysctl(doc, Path("/"), keys)
        seen = {r.id: host_value(sysctl_bin, r.id) for r in obs.resources}
    assert [r.id for r in obs.resources] == sorted(keys)
    for res in obs.resources:
        expected = seen[res.id]
        assert res.props["value"] == expected, res.id
        if expected is None:
            assert any(w.startswith(f"sysctl {res.id} does not exist") for w in obs.warnings)
    assert obs.problems == []  # policy warn: refusals are warnings


def test_real_read_only_key_is_refused_by_policy():
    # fs.file-nr is 0444 in /proc/sys: even root may not write it.
    for policy in ("warn", "fail"):
        doc = load(on_refused=policy)
        obs = observe_sysctl(doc, Path("/"), ["fs.file-nr"])
        (res,) = obs.resources
        assert res.props["value"] and len(res.props["value"].split()) == 3
        line = "sysctl fs.file-nr is read-only here (container or VPS kernel)"
        assert line in (obs.warnings if policy == "warn" else obs.problems)


SNIPPET = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from conduit.drivers.sysctl import observe_sysctl
    from conduit.spec.load import load_text
    from tests.helpers import SMALL_VPS

    keys = json.loads(sys.argv[1])
    for key, value in keys.items():
        Path("/proc/sys", key.replace(".", "/")).write_text(value)
    doc = load_text(sys.stdin.read(), "c.yaml", SMALL_VPS)
    obs = observe_sysctl(doc, Path("/"), list(keys) + ["net.netfilter.nf_conntrack_max"])
    print(json.dumps({"values": {r.id: r.props["value"] for r in obs.resources},
                      "warnings": obs.warnings, "problems": obs.problems}))
    """
)


def run_in_netns(prefix: list[str], spec_text: str) -> dict:
    done = subprocess.run(
        [*prefix, sys.executable, "-c", SNIPPET, json.dumps(NETNS_KEYS)],
        input=spec_text,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_netns_result(result: dict, before: dict[str, str | None]) -> None:
    for key, value in NETNS_KEYS.items():
        assert result["values"][key] == value
    # Conntrack's limit is global: a namespace serves it read-only (or not at all).
    refused = [w for w in result["warnings"] if w.startswith("sysctl net.netfilter.nf_conntrack_max")]
    assert len(refused) == 1 and result["problems"] == []
    sysctl_bin = need("sysctl")
    assert {k: host_value(sysctl_bin, k) for k in NETNS_KEYS} == before  # the host is untouched


def test_write_and_read_back_in_an_unshared_netns():
    unshare = need("unshare")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        unavailable(f"unshare -n cannot run here: {probe.stderr.strip()}")
    before = {k: host_value(need("sysctl"), k) for k in NETNS_KEYS}
    spec_text = dump(minimal(sysctl={"on_refused": "warn"}))
    check_netns_result(run_in_netns([unshare, "-n"], spec_text), before)


def test_write_and_read_back_in_a_named_netns():
    ip = need("ip")
    name = f"cdt-{os.getpid()}"
    added = subprocess.run([ip, "netns", "add", name], capture_output=True, text=True, check=False)
    if added.returncode != 0:
        unavailable(f"ip netns add cannot run here: {added.stderr.strip()}")
    try:
        before = {k: host_value(need("sysctl"), k) for k in NETNS_KEYS}
        spec_text = dump(minimal(sysctl={"on_refused": "warn"}))
        check_netns_result(run_in_netns([ip, "netns", "exec", name], spec_text), before)
    finally:
        subprocess.run([ip, "netns", "delete", name], capture_output=True, check=False)
    listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert name not in listed.split()
