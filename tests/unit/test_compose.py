"""Specs that extend base files (conduit.spec.compose through conduit.spec.load), and fleet.yaml (conduit.spec.fleet)."""

import os
from pathlib import Path

import pytest

from conduit.spec.fleet import load_fleet_text
from conduit.errors import SpecError
from conduit.spec.load import load_file, load_text
from tests.helpers import BASE_NODE_SPEC, EXAMPLE, ROOT, SMALL_VPS

BASE = BASE_NODE_SPEC


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "fleet.yaml").write_text("")  # marks the root the bases must live in
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_file(path, SMALL_VPS)
    return info.value.lines()


def test_bases_apply_in_order_then_the_spec_on_top(tmp_path):
    root = tree(tmp_path, {
        "base/node.yaml": BASE,
        "base/eu.yaml": "spec:\n  conduit:\n    max_clients: 200\n    bandwidth_mbps: 10\n",
        "hosts/a.yaml": "extends: [../base/node.yaml, ../base/eu.yaml]\nmetadata: {name: a}\nspec:\n  conduit: {max_clients: 150}\n",
    })
    doc = load_file(root / "hosts/a.yaml", SMALL_VPS)
    assert (doc.metadata.name, doc.spec.conduit.max_clients, doc.spec.conduit.bandwidth_mbps) == ("a", 150, 10)
    assert doc.spec.containers.image == "ghcr.io/psiphon-inc/conduit/cli:2.0.0"  # from node.yaml, untouched by the others


def test_null_removes_a_key_and_lists_replace(tmp_path):
    root = tree(tmp_path, {
        "base.yaml": BASE + "  containers:\n    count: 1\n    image: ghcr.io/psiphon-inc/conduit/cli:2.0.0\n"
                            "    security: {cap_drop: [ALL, NET_RAW]}\n    restart_policy: always\n",
        "a.yaml": "extends: [base.yaml]\nmetadata: {name: a}\nspec:\n  containers:\n    security: {cap_drop: [NET_RAW]}\n"
                  "    restart_policy: null\n",
    })
    base = root / "base.yaml"
    base.write_text(base.read_text().replace("  containers:\n    count: 1\n    image: ghcr.io/psiphon-inc/conduit/cli:2.0.0\n  network", "  network", 1))
    doc = load_file(root / "a.yaml", SMALL_VPS)
    assert doc.spec.containers.security.cap_drop == ["NET_RAW"]
    default = load_text(BASE.replace("kind: ConduitCluster", "kind: ConduitCluster\nmetadata: {name: a}"), "x.yaml", SMALL_VPS)
    assert doc.spec.containers.restart_policy == default.spec.containers.restart_policy != "always"


def test_an_error_in_a_base_names_the_base_file_and_line(tmp_path):
    root = tree(tmp_path, {
        "base/node.yaml": BASE,
        "base/eu.yaml": "# Europe\nspec:\n  conduit:\n    max_clients: 5000\n",
        "hosts/a.yaml": "extends: [../base/node.yaml, ../base/eu.yaml]\nmetadata: {name: a}\nspec:\n  containers: {count: 0}\n",
    })
    assert problems(root / "hosts/a.yaml") == [
        f"{root}/base/eu.yaml:4:5: spec.conduit.max_clients: must be <= 1000",
        f"{root}/hosts/a.yaml:4:16: spec.containers.count: must be >= 1",
    ]


def test_a_capacity_warning_points_at_the_file_whose_value_won(tmp_path):
    root = tree(tmp_path, {"base.yaml": BASE, "a.yaml": "extends: [base.yaml]\nmetadata: {name: a}\nspec:\n  conduit: {max_clients: 1000}\n"})
    warned = load_file(root / "a.yaml", SMALL_VPS)._capacity.warnings
    assert warned and all(w.startswith(f"{root}/a.yaml:4:13: spec.conduit.max_clients:") for w in warned)


def test_a_cycle_is_refused_in_one_line_naming_it(tmp_path):
    root = tree(tmp_path, {"a.yaml": "extends: [b.yaml]\n", "b.yaml": "extends: [c.yaml]\n", "c.yaml": "extends: [a.yaml]\n"})
    assert problems(root / "a.yaml") == [
        f"{root}/c.yaml:1:11: extends: extends cycle: {root}/a.yaml -> {root}/b.yaml -> {root}/c.yaml -> {root}/a.yaml; remove one of these extends"
    ]


def test_a_base_outside_the_root_is_refused(tmp_path):
    root = tree(tmp_path / "repo", {"a.yaml": "extends: [../x.yaml]\n"})
    (tmp_path / "x.yaml").write_text(BASE)
    (line,) = problems(root / "a.yaml")
    assert line == f"{root}/a.yaml:1:11: extends.0: '../x.yaml' leaves {root}; bases must live inside it"
    (root / "a.yaml").write_text("extends: [/etc/conduit/base.yaml]\n")
    (line,) = problems(root / "a.yaml")
    assert "is absolute" in line


def test_a_symlink_that_leaves_the_root_is_refused(tmp_path):
    root = tree(tmp_path / "repo", {"a.yaml": "extends: [base.yaml]\nmetadata: {name: a}\n"})
    (tmp_path / "outside.yaml").write_text(BASE)
    (root / "base.yaml").symlink_to(tmp_path / "outside.yaml")
    (line,) = problems(root / "a.yaml")
    assert line == f"{root}/base.yaml:1:1: is a link to {tmp_path}/outside.yaml, outside {root}; bases must live inside it"
    (root / "inside.yaml").write_text(BASE)
    (root / "base.yaml").unlink()
    (root / "base.yaml").symlink_to("inside.yaml")  # a link inside the root is followed
    assert load_file(root / "a.yaml", SMALL_VPS).metadata.name == "a"



def test_a_base_that_is_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    root = tree(tmp_path / "repo", {"a.yaml": "extends: [base.yaml]\nmetadata: {name: a}\n"})
    os.mkfifo(root / "base.yaml")
    (line,) = problems(root / "a.yaml")
    assert line == f"{root}/base.yaml:1:1: is not a regular file"

def test_extends_must_be_a_list_of_paths(tmp_path):
    root = tree(tmp_path, {"a.yaml": "extends: base.yaml\n"})
    (line,) = problems(root / "a.yaml")
    assert line.startswith(f"{root}/a.yaml:1:1: extends: must be a list of paths")


def test_text_that_extends_but_is_not_a_file_is_refused():
    with pytest.raises(SpecError) as info:
        load_text("extends: [base.yaml]\n", "generation 3", SMALL_VPS)
    assert info.value.lines() == ["generation 3:1:1: extends: a spec that extends base files is read from a file next to them"]


def test_a_spec_without_extends_is_untouched():
    assert load_file(EXAMPLE, SMALL_VPS) == load_text(EXAMPLE.read_text(), str(EXAMPLE), SMALL_VPS)


FLEET = """\
apiVersion: conduit.psiphon.ca/v1alpha1
kind: ConduitFleet
rings: {canary: main, stable: stable}
default_ring: stable
hosts:
  - name: fra-1
    spec: hosts/fra-1.yaml
    agent: https://fra-1.example.net:8443
    labels: {provider: hetzner, region: eu-central, ring: canary}
  - name: ams-1
    spec: hosts/ams-1.yaml
    agent: http://127.0.0.1:18443
"""


def fleet_problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_fleet_text(text, "fleet.yaml")
    return info.value.lines()


def test_a_fleet_names_hosts_rings_and_agents():
    fleet = load_fleet_text(FLEET, "fleet.yaml")
    assert [(h.name, fleet.ring(h)) for h in fleet.hosts] == [("fra-1", "canary"), ("ams-1", "stable")]
    assert fleet.rings == {"canary": "main", "stable": "stable"}


@pytest.mark.parametrize("old, new, expected", [
    ("ring: canary", "ring: canery", "fleet.yaml:9:53: hosts.0.labels.ring: 'canery' is not one of the rings (canary, stable)"),
    ("name: ams-1", "name: fra-1", "fleet.yaml:10:5: hosts.1.name: 'fra-1' is already the name of hosts.0"),
    ("https://fra-1.example.net:8443", "http://fra-1.example.net:8443",
     "fleet.yaml:8:5: hosts.0.agent: 'http://fra-1.example.net:8443' is plain http to another machine; use https, or http://127.0.0.1:port through a tunnel"),
    ("https://fra-1.example.net:8443", "https://me:pw@fra-1.example.net:8443",
     "fleet.yaml:8:5: hosts.0.agent: an agent address carries no user or password; the agent's token lives outside the repository"),
    ("spec: hosts/fra-1.yaml", "spec: ../fra-1.yaml", "fleet.yaml:7:5: hosts.0.spec: '../fra-1.yaml' leaves the fleet's directory; specs must live inside it"),
    ("stable: stable}", "stable: 'st able'}", "fleet.yaml:3:1: rings: ring stable: 'st able' is not a git ref (a branch such as main or stable)"),
    ("region: eu-central", "regoin: eu-central", "fleet.yaml:9:33: hosts.0.labels.regoin: unknown field (did you mean 'region'?)"),
])
def test_fleet_errors_name_the_line(old, new, expected):
    assert old in FLEET
    assert fleet_problems(FLEET.replace(old, new, 1)) == [expected]


def test_a_host_with_no_ring_needs_a_default():
    (line,) = fleet_problems(FLEET.replace("default_ring: stable\n", ""))
    assert line == "fleet.yaml:9:5: hosts.1.labels: names no ring, and the fleet has no default_ring"


def test_the_example_fleet_is_a_valid_fleet():
    fleet = load_fleet_text((ROOT / "examples/fleet/fleet.yaml").read_text(), "fleet.yaml")
    assert len(fleet.hosts) == 3
    for host in fleet.hosts:
        assert load_file(ROOT / "examples/fleet" / host.spec, SMALL_VPS).metadata.name == host.name


def test_a_generation_records_the_merged_document_not_the_extends(tmp_path):
    from conduit.spec.load import spec_text

    root = tree(tmp_path, {"base.yaml": BASE, "a.yaml": "extends: [base.yaml]\nmetadata: {name: a}\nspec:\n  conduit: {max_clients: 200}\n"})
    recorded = spec_text(root / "a.yaml")
    assert "extends" not in recorded.split("\n", 1)[1]
    (root / "base.yaml").write_text("this base changed after the apply\n")
    doc = load_text(recorded, "generation 1", SMALL_VPS)  # a rollback reads no base
    assert (doc.metadata.name, doc.spec.conduit.max_clients, doc.spec.conduit.bandwidth_mbps) == ("a", 200, 5)
    assert spec_text(EXAMPLE) == EXAMPLE.read_text()  # a spec without extends is recorded as written
