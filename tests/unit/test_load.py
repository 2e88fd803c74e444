import pytest

from conduit.errors import SpecError
from conduit.spec.load import MAX_BYTES, load_file, load_text
from conduit.spec.resolve import nodes
from tests.helpers import EXAMPLE, SMALL_VPS, dump, minimal


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_text(text, "cluster.yaml", SMALL_VPS)
    return info.value.lines()


def example_with(old: str, new: str) -> str:
    text = EXAMPLE.read_text()
    assert old in text
    return text.replace(old, new, 1)


def test_example_is_valid_and_sized_like_the_seed_cluster():
    spec = load_file(EXAMPLE, SMALL_VPS)
    settings = nodes(spec)
    assert [n.name for n in settings] == [f"conduit-{i}" for i in range(1, 9)]
    assert settings[0].cpus == 0.22 and settings[0].memory == 384 << 20
    assert settings[7].memory == 512 << 20  # the override of container 8
    assert {n.metrics_port for n in settings} == set(range(9090, 9098))


def test_error_names_file_line_column_and_field():
    assert problems(example_with("count: 8", "count: 0")) == [
        "cluster.yaml:29:5: spec.containers.count: must be >= 1"
    ]


def test_unknown_key_gets_a_did_you_mean_hint():
    (line,) = problems(example_with("profile: conduit", "profle: conduit"))
    assert line.startswith("cluster.yaml:99:5: spec.sysctl.profle: unknown field")
    assert "did you mean 'profile'" in line


def test_duplicate_key_is_refused():
    (line,) = problems(example_with("count: 8", "count: 8\n    count: 9"))
    assert line == "cluster.yaml:30:5: spec.containers.count: duplicate key 'count'"


def test_union_field_error_is_one_sentence():
    (line,) = problems(example_with("vcpus: 2", "vcpus: lots"))
    assert line == "cluster.yaml:19:5: spec.host.vcpus: must be a number or 'auto'"


def test_cpu_total_must_fit_the_host():
    (line,) = problems(example_with("cpus: 0.22", "cpus: 0.9"))
    assert line == (
        "cluster.yaml:36:7: spec.containers.resources.cpus: 8 nodes ask for 6.5 CPUs in all, more than the host's 2 CPUs; "
        "lower cpus to 0.225 or count to 2"
    )


def test_memory_total_must_fit_the_host():
    (line,) = problems(example_with("memory: 384MiB", "memory: 1GiB"))
    assert line.startswith("cluster.yaml:37:7: spec.containers.resources.memory:")


def test_ulimit_above_host_hard_limit_reports_the_limit():
    (line,) = problems(example_with("ulimit_nofile: 16384", "ulimit_nofile: 65535"))
    assert "hard open-file limit of 20000" in line


def test_ulimit_in_override_points_at_the_override():
    (line,) = problems(example_with("        cpus: 0.2\n", "        cpus: 0.2\n        ulimit_nofile: 30000\n"))
    assert "spec.containers.overrides.8.ulimit_nofile" in line


def test_override_of_missing_container():
    (line,) = problems(example_with("      8:   ", "      9:   "))
    assert "spec.containers.overrides.9: container 9 does not exist (count is 8)" in line


def test_load_balancer_needs_bridge_networking():
    (line,) = problems(example_with("mode: bridge", "mode: host"))
    assert "spec.network.mode" in line


def test_published_ports_must_not_collide_with_metrics():
    # tcp listener published on 9093.. overlaps the metrics ports 9090..9097
    (line,) = problems(example_with("host_port_base: 8081        # conduit-1", "host_port_base: 9093        # conduit-1"))
    assert "spec.loadbalancer.listeners.0.host_port_base" in line and "collides" in line


def test_same_port_number_on_other_protocol_is_fine():
    load_text(example_with("host_port_base: 8081        # same", "host_port_base: 9090        # same"), "c.yaml", SMALL_VPS)


def test_listener_port_beyond_65535():
    with pytest.raises(SpecError) as info:
        load_text(example_with("host_port_base: 8081        # conduit-1", "host_port_base: 65530        # conduit-1"), "c", SMALL_VPS)
    assert "above 65535" in str(info.value)


def test_names_must_be_safe():
    (line,) = problems(example_with("name: edge-1", "name: 'Edge 1; rm -rf /'"))
    assert line.startswith("cluster.yaml:14:3: metadata.name:") and "not a safe name" in line


def test_secret_must_be_a_reference():
    (line,) = problems(example_with("bot_token: {env: CONDUIT_TELEGRAM_TOKEN}", "bot_token: '123:abc'"))
    assert "spec.alerts.telegram.bot_token" in line and "123:abc" not in line


def test_bare_no_is_a_restart_policy():
    spec = load_text(example_with("restart_policy: unless-stopped", "restart_policy: no"), "c", SMALL_VPS)
    assert spec.spec.containers.restart_policy == "no"


def test_missing_required_field():
    (line,) = problems("apiVersion: conduit.psiphon.ca/v1alpha1\nkind: ConduitCluster\nspec: {}\n")
    assert line == "cluster.yaml:1:1: metadata: required field is missing"


def test_wrong_kind():
    (line,) = problems(dump(minimal()).replace("ConduitCluster", "Deployment"))
    assert "kind: must be 'ConduitCluster'" in line


def test_alias_bomb_is_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    (line,) = problems(bomb)
    assert "alias bomb" in line


def test_huge_document_is_refused():
    (line,) = problems("# " + "x" * MAX_BYTES)
    assert "larger than" in line


def test_invalid_yaml_names_the_line():
    (line,) = problems("apiVersion: [\nkind: x\n")
    assert line.startswith("cluster.yaml:") and "invalid YAML" in line


def test_several_documents_are_refused():
    (line,) = problems(dump(minimal()) + "---\n" + dump(minimal()))
    assert "one document" in line


def test_empty_file():
    (line,) = problems("")
    assert "empty" in line


def test_official_profile_defaults_on_a_small_vps():
    spec = load_text(dump(minimal()), "c", SMALL_VPS)
    (node,) = nodes(spec)
    # what is left after the reserve: min(1.8 CPU, 3.5 GiB / 2 GiB) = 1.75 units x 250 clients on one node
    assert node.max_clients == 438
    assert node.cpus == 1.8 and node.memory == (4096 - 512) << 20
    assert node.ulimit_nofile == 16384


def test_cluster_profile_defaults_follow_the_seed_model():
    spec = load_text(dump(minimal(host={"profile": "cluster-v2"})), "c", SMALL_VPS)
    settings = nodes(spec)
    assert len(settings) == 8
    assert all(n.cpus == 0.22 and n.memory == 384 << 20 and n.max_clients == 250 for n in settings)
    assert spec.spec.conduit.bandwidth_mbps == 3


def test_ulimit_default_is_lowered_to_the_host_limit():
    from dataclasses import replace

    spec = load_text(dump(minimal()), "c", replace(SMALL_VPS, nofile_limit=4096))
    assert nodes(spec)[0].ulimit_nofile == 4096


def test_given_host_wins_over_detected():
    spec = load_text(dump(minimal(host={"vcpus": 8, "memory": "16GiB"})), "c", SMALL_VPS)
    assert spec.spec.host.vcpus == 8 and spec.spec.containers.count == 2


def test_v1_naming_scheme():
    spec = load_text(dump(minimal(containers={"count": 3, "naming": {"scheme": "v1"}}, host={"vcpus": 4, "memory": "8GiB"})), "c", SMALL_VPS)
    assert [(n.name, n.volume) for n in nodes(spec)] == [
        ("conduit", "conduit-data"),
        ("conduit-2", "conduit-data-2"),
        ("conduit-3", "conduit-data-3"),
    ]


def test_unreadable_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_file(tmp_path / "missing.yaml", SMALL_VPS)
    assert "cannot read" in str(info.value)


def test_binary_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SpecError) as info:
        load_file(path, SMALL_VPS)
    assert "not UTF-8" in str(info.value)


def test_tracker_ports_must_be_upward_ranges_of_real_ports():
    (line,) = problems(example_with("ports: 1024-65535", "ports: 5000-1024"))
    assert "spec.tracker.ports" in line and "upward range" in line


def test_nginx_values_must_not_break_the_config():
    (line,) = problems(example_with("access_log: /var/log/nginx/conduit-stream.log", "access_log: '/var/log/nginx/x.log; evil'"))
    assert line.startswith("cluster.yaml:") and "spec.loadbalancer.access_log" in line


# Values that once ended in a traceback (OverflowError, ValueError, RecursionError): each is one
# line naming the field, exit 2.
@pytest.mark.parametrize(
    "old, new, field, message",
    [
        ("vcpus: 2", "vcpus: .inf", "spec.host.vcpus", "must be a finite number or 'auto'"),
        ("vcpus: 2", "vcpus: .nan", "spec.host.vcpus", "must be a finite number or 'auto'"),
        ("cpus: 0.22", "cpus: .inf", "spec.containers.resources.cpus", "must be a finite number"),
        ("cpus: 0.22", "cpus: 1e400", "spec.containers.resources.cpus", "must be a finite number"),
        ("memory: 4GiB", "memory: " + "9" * 400, "spec.host.memory", "number is out of range"),
        ("memory: 4GiB", "memory: " + "9" * 30 + "GiB", "spec.host.memory", "must be at most 1PiB or 'auto'"),
        ("memory: 4GiB", "memory: 2000000TiB", "spec.host.memory", "must be at most 1PiB or 'auto'"),
        ("count: 8", "count: " + "9" * 5000, "spec.containers.count", "number is out of range"),
        ("count: 8", "count: 9223372036854775808", "spec.containers.count", "number is out of range"),
    ],
)
def test_numbers_out_of_any_sane_range_are_one_line(old, new, field, message):
    (line,) = problems(example_with(old, new))
    assert line.endswith(f": {field}: {message}"), line


def test_nesting_deeper_than_the_parser_can_follow_is_one_line():
    (line,) = problems("a: " + "[" * 5000 + "]" * 5000 + "\n")
    # libyaml stops first in PyYAML 6.0.4 and later ("exceeded maximum nesting depth"); either way one line
    assert line.startswith("cluster.yaml:1:") and "nest" in line


def test_a_key_with_a_newline_is_quoted_so_the_error_stays_one_line():
    (line,) = problems(EXAMPLE.read_text().replace("spec:\n", 'spec:\n  "x\\n": 1\n', 1))
    assert "\n" not in line and "spec.'x\\n': unknown field" in line
