"""`conduit fleet` on a real git repository of specs: validate, plan --offline, diff --git-ref."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BASE_NODE_SPEC, CONDUIT, ROOT, cli_env

NODE = BASE_NODE_SPEC
# eu-1 and eu-2 extend eu.yaml; us-1 does not.
HOSTS = {"eu-1": ["../base/node.yaml", "../base/eu.yaml"], "eu-2": ["../base/node.yaml", "../base/eu.yaml"], "us-1": ["../base/node.yaml"]}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.net", *args],
                          check=True, capture_output=True, text=True).stdout


def conduit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CONDUIT, "fleet", *args], capture_output=True, text=True, env=cli_env(), cwd=cwd, timeout=120)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    fleet = ["apiVersion: conduit.psiphon.ca/v1alpha1", "kind: ConduitFleet", "rings: {canary: main, stable: stable}",
             "default_ring: stable", "hosts:"]
    for name, bases in HOSTS.items():
        fleet += [f"  - name: {name}", f"    spec: hosts/{name}.yaml", f"    agent: https://{name}.example.net:8443"]
        (tmp_path / "hosts").mkdir(exist_ok=True)
        (tmp_path / "hosts" / f"{name}.yaml").write_text(f"extends: [{', '.join(bases)}]\nmetadata: {{name: {name}}}\n")
    (tmp_path / "fleet.yaml").write_text("\n".join(fleet) + "\n")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "node.yaml").write_text(NODE)
    (tmp_path / "base" / "eu.yaml").write_text("# Europe\nspec:\n  conduit:\n    bandwidth_mbps: 10\n")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "fleet")
    return tmp_path


def test_validate_accepts_the_fleet(repo):
    done = conduit("validate", "fleet.yaml", cwd=repo)
    assert (done.returncode, done.stdout, done.stderr) == (0, "fleet.yaml: valid (3 hosts, 3 specs)\n", "")


def test_diff_on_a_change_to_a_base_lists_exactly_the_hosts_that_extend_it(repo):
    done = conduit("diff", "--git-ref", "HEAD", "fleet.yaml", cwd=repo)
    assert (done.returncode, done.stdout) == (0, "unchanged: eu-1, eu-2, us-1\n"), done.stderr
    eu = repo / "base" / "eu.yaml"
    eu.write_text(eu.read_text().replace("bandwidth_mbps: 10", "bandwidth_mbps: 20"))
    done = conduit("diff", "--git-ref", "HEAD", "fleet.yaml", cwd=repo)
    assert done.returncode == 2, done.stderr
    assert done.stdout.splitlines() == [
        "eu-1 (ring stable, hosts/eu-1.yaml): Plan: 1 to add, 0 to change, 1 to destroy.",
        "eu-2 (ring stable, hosts/eu-2.yaml): Plan: 1 to add, 0 to change, 1 to destroy.",
        "unchanged: us-1",
    ]
    data = json.loads(conduit("diff", "--git-ref", "HEAD", "--json", "fleet.yaml", cwd=repo).stdout)
    assert [h["name"] for h in data["hosts"]] == ["eu-1", "eu-2"] and data["unchanged"] == ["us-1"]
    assert any(c["field"] == "command" for s in data["hosts"][0]["plan"]["steps"] for c in s["changes"])
    # Committed, the change is the ref's too: nothing differs any more; the ref before it still does.
    git(repo, "commit", "-qam", "more bandwidth in Europe")
    assert conduit("diff", "--git-ref", "HEAD", "fleet.yaml", cwd=repo).returncode == 0
    done = conduit("diff", "--git-ref", "HEAD~1", "fleet.yaml", cwd=repo)
    assert done.returncode == 2 and done.stdout.splitlines()[-1] == "unchanged: us-1"


def test_diff_names_a_new_host_and_a_removed_one(repo):
    fleet = repo / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("name: us-1", "name: us-2"))
    (repo / "hosts" / "us-1.yaml").write_text("extends: [../base/node.yaml]\nmetadata: {name: us-2}\n")
    done = conduit("diff", "--git-ref", "HEAD", "fleet.yaml", cwd=repo)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        "us-2 (ring stable, hosts/us-1.yaml): Plan: 10 to add, 0 to change, 0 to destroy.",
        "removed from the fleet: us-1",
        "unchanged: eu-1, eu-2",
    ]


def test_a_broken_value_in_a_base_is_reported_with_the_base_line_and_the_host(repo):
    eu = repo / "base" / "eu.yaml"
    eu.write_text(eu.read_text().replace("bandwidth_mbps: 10", "bandwidth_mbps: 0.5"))
    done = conduit("validate", "fleet.yaml", cwd=repo)
    assert done.returncode == 2 and done.stdout == ""
    problem = "base/eu.yaml:4:5: spec.conduit.bandwidth_mbps: bandwidth must be at least 1 Mbps (or -1 for unlimited)"
    assert done.stderr.splitlines() == [f"eu-1: {problem}", f"eu-2: {problem}",
                                        "error: 2 of 3 hosts have an invalid spec; fix the lines above"]
    done = conduit("diff", "--git-ref", "HEAD", "fleet.yaml", cwd=repo)
    assert done.returncode == 1 and done.stderr.splitlines() == [f"eu-1: {problem}", f"eu-2: {problem}"]
    # The broken value committed: the ref's copy is named by the ref.
    git(repo, "commit", "-qam", "broken")
    eu.write_text(eu.read_text().replace("bandwidth_mbps: 0.5", "bandwidth_mbps: 10"))
    done = conduit("diff", "--git-ref", "HEAD", "fleet.yaml", cwd=repo)
    assert done.returncode == 1 and done.stderr.splitlines()[0] == f"eu-1: HEAD:{problem}"


def test_a_cycle_and_an_escape_are_refused_in_one_line(repo):
    (repo / "base" / "eu.yaml").write_text("extends: [node.yaml]\n")
    (repo / "base" / "node.yaml").write_text("extends: [eu.yaml]\n")
    done = conduit("validate", "fleet.yaml", cwd=repo)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        "eu-1: base/eu.yaml:1:11: extends: extends cycle: base/node.yaml -> base/eu.yaml -> base/node.yaml; remove one of these extends")
    (repo / "hosts" / "us-1.yaml").write_text("extends: [../../x.yaml]\nmetadata: {name: us-1}\n")
    done = conduit("validate", "fleet.yaml", cwd=repo)
    assert f"us-1: hosts/us-1.yaml:1:11: extends.0: '../../x.yaml' leaves {repo}; bases must live inside it" in done.stderr.splitlines()


def test_plan_offline_summarises_each_host(repo):
    done = conduit("plan", "--offline", "fleet.yaml", cwd=repo)
    assert done.returncode == 2, done.stderr
    assert done.stdout.splitlines() == [f"{name} (ring stable, hosts/{name}.yaml): Plan: 10 to add, 0 to change, 0 to destroy."
                                        for name in HOSTS]
    full = conduit("plan", "--offline", "--verbose", "fleet.yaml", cwd=repo).stdout
    assert full.count("Offline plan: against an empty host") == 3 and "+ container conduit-1" in full
    data = json.loads(conduit("plan", "--offline", "--json", "fleet.yaml", cwd=repo).stdout)
    assert [h["summary"]["add"] for h in data["hosts"]] == [10, 10, 10]
    assert conduit("plan", "fleet.yaml", cwd=repo).returncode == 2  # a fleet plan reads no host


def test_the_example_fleet_validates():
    done = subprocess.run([*CONDUIT, "fleet", "validate", "examples/fleet/fleet.yaml"], capture_output=True, text=True,
                          env=cli_env(), cwd=ROOT, timeout=120)
    assert (done.returncode, done.stdout) == (0, "examples/fleet/fleet.yaml: valid (3 hosts, 3 specs)\n"), done.stderr
