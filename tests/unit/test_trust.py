"""conduit.spec.trust and conduit.spec.policy: a spec (perhaps pushed to git by someone else) chooses
only within the host policy; each hostile spec is refused by `conduit validate` with exit 2 and
one line per problem naming the field and the policy, before anything on the host is touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.cli.root import main
from conduit.features.watch import Watcher
from conduit.drivers.observe import HostAccess
from conduit.render.desired import render
from conduit.errors import SpecError
from conduit.spec.load import load_text
from conduit.spec.policy import HostPolicy, load_policy, under
from conduit.spec.trust import owned_flag
from tests.helpers import SMALL_VPS, dump, minimal

DEFAULTS = (HostPolicy(), "the default host policy")


def spec(**fields) -> dict:
    doc = minimal(containers={"count": 1, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0"})
    for path, value in fields.items():
        parent = doc["spec"]
        *head, last = path.split("__")
        for part in head:
            parent = parent.setdefault(part, {})
        parent[last] = value
    return doc


def refusals(doc: dict, policy=DEFAULTS) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_text(dump(doc), "cluster.yaml", SMALL_VPS, policy)
    return info.value.lines()


LB = {"enabled": True, "listeners": [{"name": "t", "port": 443, "backend_port": 443, "host_port_base": 8081}]}
BRIDGE = {"mode": "bridge"}
TELEGRAM_OK = {"bot_token": {"env": "CONDUIT_TELEGRAM_TOKEN"}, "chat_id": {"env": "CONDUIT_TELEGRAM_CHAT"}}

# Each spec that a push to the spec repository could use to take the host, and the field refused.
HOSTILE = {
    "core_pattern": (spec(sysctl__overrides={"kernel.core_pattern": "|/tmp/x %p"}), "spec.sysctl.overrides.kernel.core_pattern"),
    "modprobe": (spec(sysctl__overrides={"kernel.modprobe": "/tmp/x"}), "spec.sysctl.overrides.kernel.modprobe"),
    "suid_dumpable": (spec(sysctl__overrides={"fs.suid_dumpable": 2}), "spec.sysctl.overrides.fs.suid_dumpable"),
    "aslr_off": (spec(sysctl__overrides={"kernel.randomize_va_space": 0}), "spec.sysctl.overrides.kernel.randomize_va_space"),
    "sysctl_file_escape": (spec(sysctl__file="/../etc/cron.d/x"), "spec.sysctl.file"),
    "sysctl_file_preload": (spec(sysctl__file="/etc/ld.so.preload"), "spec.sysctl.file"),
    "include_escape": (
        spec(network=BRIDGE, loadbalancer={**LB, "nginx": {"include_file": "/etc/nginx/../cron.d/x"}}),
        "spec.loadbalancer.nginx.include_file",
    ),
    "nginx_binary": (spec(loadbalancer={"nginx": {"binary": "/tmp/evil"}}), "spec.loadbalancer.nginx.binary"),
    "access_log": (spec(network=BRIDGE, loadbalancer={**LB, "access_log": "/root/x.log"}), "spec.loadbalancer.access_log"),
    "access_log_empty": (spec(network=BRIDGE, loadbalancer={**LB, "access_log": ""}), "spec.loadbalancer.access_log"),
    "main_config": (spec(loadbalancer={"nginx": {"main_config": "/etc/passwd"}}), "spec.loadbalancer.nginx.main_config"),
    "token_file": (
        spec(alerts={"telegram": {**TELEGRAM_OK, "bot_token": {"file": "/etc/shadow"}}}),
        "spec.alerts.telegram.bot_token.file",
    ),
    "chat_file": (
        spec(alerts={"telegram": {**TELEGRAM_OK, "chat_id": {"file": "/root/.ssh/id_rsa"}}}),
        "spec.alerts.telegram.chat_id.file",
    ),
    "token_env": (
        spec(alerts={"telegram": {**TELEGRAM_OK, "bot_token": {"env": "AWS_SECRET_ACCESS_KEY"}}}),
        "spec.alerts.telegram.bot_token.env",
    ),
    "api_url": (spec(alerts={"telegram": {**TELEGRAM_OK, "api_url": "http://elsewhere.example"}}), "spec.alerts.telegram.api_url"),
    "data_dir_flag": (spec(conduit__extra_args=["--data-dir", "/tmp/elsewhere"]), "spec.conduit.extra_args.0"),
    "data_dir_short": (spec(conduit__extra_args=["-d/tmp/elsewhere"]), "spec.conduit.extra_args.0"),
    "metrics_flag": (spec(conduit__extra_args=["--metrics-addr=0.0.0.0:9"]), "spec.conduit.extra_args.0"),
    "image_flag": (spec(containers={"count": 1, "image": "--privileged"}), "spec.containers.image"),
    "image_elsewhere": (spec(containers={"count": 1, "image": "docker.io/evil/conduit:1"}), "spec.containers.image"),
    "ld_preload": (
        spec(containers={"count": 1, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0", "env": {"LD_PRELOAD": "/x.so"}}),
        "spec.containers.env.LD_PRELOAD",
    ),
    "log_fills_disk": (
        spec(containers={"count": 1, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0", "logging": {"max_size": "999g", "max_file": 100}}),
        "spec.containers.logging.max_size",
    ),
    "data_dir_root": (spec(conduit__data_dir="/"), "spec.conduit.data_dir"),
    "data_dir_volume_syntax": (spec(conduit__data_dir="/x:/etc"), "spec.conduit.data_dir"),
    "data_dir_escape": (spec(conduit__data_dir="/home/../../proc/1/root"), "spec.conduit.data_dir"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_spec_is_refused_naming_field_and_policy(name):
    doc, field = HOSTILE[name]
    lines = refusals(doc)
    assert any(f": {field}: " in line and "(the default host policy" in line and line.endswith(")") for line in lines), lines
    assert all(line.startswith("cluster.yaml:") and "\n" not in line for line in lines)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_validate_refuses_it_with_exit_2(name, tmp_path):
    doc, field = HOSTILE[name]
    path = tmp_path / "cluster.yaml"
    path.write_text(dump(doc))
    policy = tmp_path / "host.yaml"
    policy.write_text("{}\n")
    policy.chmod(0o600)
    result = CliRunner().invoke(main, ["--policy", str(policy), "validate", str(path)], env={"CONDUIT_POLICY": None})
    assert result.exit_code == 2, result.output
    assert f"{path}:" in result.output and field in result.output and f"(host policy {policy}" in result.output
    assert "Traceback" not in result.output


def test_the_same_specs_pass_where_the_host_allows_them():
    """What the refusals stand on is the policy, not a fixed rule: a permissive one lets the paths through."""
    policy = HostPolicy.model_validate({
        "images": ["*"], "telegram_api_urls": ["*"],
        "nginx": {"binaries": ["/usr/sbin/nginx", "/tmp/*"], "main_configs": ["/etc/*"], "config_dirs": ["/etc"],
                  "log_dirs": ["/var/log/nginx", "/root"]},
        "sysctl": {"dirs": ["/etc"], "extra_keys": ["kernel.modprobe"]},
        "secrets": {"file_dirs": ["/etc", "/root"], "env": ["*"]},
    })  # fmt: skip
    for name in ("modprobe", "nginx_binary", "main_config", "token_file", "chat_file", "token_env", "api_url", "image_elsewhere"):
        doc, _ = HOSTILE[name]
        load_text(dump(doc), "cluster.yaml", SMALL_VPS, (policy, "host policy p"))


def test_a_nodes_log_on_disk_is_held_to_the_policys_max_node_log():
    def logging(max_size: str, max_file: int) -> dict:
        return spec(containers={"count": 1, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0",
                                "logging": {"max_size": max_size, "max_file": max_file}})  # fmt: skip

    for fits in (logging("15m", 3), logging("500m", 2), logging("1g", 1)):  # the default cap is 1g a node
        load_text(dump(fits), "cluster.yaml", SMALL_VPS, DEFAULTS)
    (line,) = [line for line in refusals(logging("1g", 2)) if "logging" in line]
    assert "1g x 2 files lets a node's log take 2 GiB; the host allows 1 GiB a node" in line and "max_node_log" in line
    roomier = (HostPolicy.model_validate({"max_node_log": "2g"}), "host policy p")
    load_text(dump(logging("1g", 2)), "cluster.yaml", SMALL_VPS, roomier)
    # a size past what a size may be is the field's line, never an exception that ends a watch
    (line,) = [line for line in refusals(logging("2000000g", 1)) if "logging" in line]
    assert line.endswith("spec.containers.logging.max_size: must be at most 1PiB")


@pytest.mark.parametrize("key", ["max_node_log", "git.max_fetch"])
@pytest.mark.parametrize("size", ["2000000g", "0m"])
def test_a_host_policy_size_out_of_bounds_is_refused_as_the_policy_is(key, size):
    top, _, sub = key.rpartition(".")
    with pytest.raises(ValidationError) as info:
        HostPolicy.model_validate({top: {sub: size}} if top else {key: size})
    assert key.split(".")[-1] in str(info.value)


def test_one_extra_sysctl_key_named_by_the_policy_lets_exactly_that_key_through():
    policy = (HostPolicy.model_validate({"sysctl": {"extra_keys": ["vm.swappiness"]}}), "host policy p")
    doc = load_text(dump(spec(sysctl__overrides={"vm.swappiness": 10})), "cluster.yaml", SMALL_VPS, policy)
    assert ("sysctl", "vm.swappiness") in {r.key for r in render(doc)}
    lines = refusals(spec(sysctl__overrides={"vm.swappiness": 10, "vm.overcommit_memory": 1}), policy)
    assert [line.split(": ")[1] for line in lines] == ["spec.sysctl.overrides.vm.overcommit_memory"]


def test_conduits_own_tuning_keys_need_no_policy():
    doc = spec(sysctl__overrides={"net.core.rmem_max": 33554432, "net.netfilter.nf_conntrack_max": 524288})
    load_text(dump(doc), "cluster.yaml", SMALL_VPS, DEFAULTS)


@pytest.mark.parametrize(
    "arg, owned",
    [("--data-dir", "--data-dir"), ("--data-dir=/x", "--data-dir"), ("-d", "-d"), ("-d/x", "-d"), ("-vd/x", "-d"),
     ("-m5", "-m"), ("--", "--"), ("-v", None), ("--geo", None), ("--set", None), ("/x", None), ("-", None)],
)  # fmt: skip
def test_owned_flags_are_found_in_every_pflag_spelling(arg, owned):
    assert owned_flag(arg) == owned


def test_the_policy_file_must_be_roots_alone(tmp_path):
    path = tmp_path / "host.yaml"
    path.write_text("max_containers: 4\n")
    path.chmod(0o600)
    policy, source = load_policy(str(path))
    assert policy.max_containers == 4 and source == f"host policy {path}"
    path.chmod(0o620)
    with pytest.raises(Exception, match="writable by no one else"):
        load_policy(str(path))
    path.chmod(0o600)
    path.write_text("imagez: []\n")
    with pytest.raises(Exception, match="imagez"):
        load_policy(str(path))


def test_a_missing_named_policy_is_an_error_not_the_defaults(tmp_path):
    with pytest.raises(Exception, match="no such file"):
        load_policy(str(tmp_path / "absent.yaml"))


def test_watch_reports_a_hostile_commit_as_invalid_and_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDUIT_POLICY", str(tmp_path / "p.yaml"))
    (tmp_path / "p.yaml").write_text("{}\n")
    (tmp_path / "p.yaml").chmod(0o600)
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    watcher = Watcher(HostAccess(root, state, "unix:///nonexistent.sock"), lambda: SMALL_VPS)
    doc, _ = HOSTILE["sysctl_file_escape"]
    result = watcher.reconcile(dump(doc), "git abc123", "git")
    assert result.status == "invalid" and "spec.sysctl.file" in result.message
    assert list(root.rglob("*")) == []


# ------------------------------------------------------------------ hostile strings everywhere


def _string_paths(data, prefix=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _string_paths(value, prefix + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _string_paths(value, prefix + (i,))
    elif isinstance(data, str):
        yield prefix


HOSTILE_TEXT = st.one_of(
    st.sampled_from(["/../etc/passwd", "/etc/nginx/../../root/x", "/tmp/x", "--privileged", "|/bin/sh", "/", "..",
                     "/etc/sysctl.d/../cron.d/x.conf", "/var/log/nginx/../../../etc/shadow", "a;b", "${HOME}", "\\x00"]),
    st.text(max_size=30),
)  # fmt: skip

FULL = spec(
    network={"mode": "bridge"},
    loadbalancer={**LB, "access_log": "/var/log/nginx/c.log"},
    alerts={"telegram": {"bot_token": {"file": "/etc/conduit/secrets/token"}, "chat_id": {"env": "CONDUIT_CHAT"}}},
    conduit__extra_args=["--geo"],
)
STRING_PATHS = list(_string_paths(FULL))


def _written_paths(doc) -> list[str]:
    s = doc.spec
    return [s.sysctl.file, s.loadbalancer.nginx.include_file, s.loadbalancer.nginx.main_config,
            s.loadbalancer.nginx.pid_file] + ([s.loadbalancer.access_log] if s.loadbalancer.access_log else [])  # fmt: skip


@given(st.lists(st.tuples(st.sampled_from(STRING_PATHS), HOSTILE_TEXT), min_size=1, max_size=4))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_hostile_strings_in_any_field_never_reach_outside_the_policy(changes):
    data = yaml.safe_load(dump(FULL))
    for path, value in changes:
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = value
    policy = HostPolicy()
    try:
        doc = load_text(dump(data), "cluster.yaml", SMALL_VPS, (policy, "the default host policy"))
    except SpecError as exc:
        assert all("\n" not in line for line in exc.lines())
        return
    for path in _written_paths(doc):
        assert under(path, ["/etc/sysctl.d", "/etc/nginx", "/run", "/var/log/nginx"]), path
    assert doc.spec.loadbalancer.nginx.binary in policy.nginx.binaries
    telegram = doc.spec.alerts.telegram
    for ref in (telegram.bot_token, telegram.chat_id):
        assert ref.file is None or under(ref.file, policy.secrets.file_dirs)
    assert all(owned_flag(arg) is None for arg in doc.spec.conduit.extra_args)
    for resource in render(doc):
        if resource.kind in ("sysctl_file", "nginx_conf", "nginx_include"):
            assert ".." not in Path(resource.id).parts and os.path.isabs(resource.id)


def test_the_example_policy_is_the_defaults():
    example = Path(__file__).resolve().parents[2] / "examples" / "host.yaml"
    assert HostPolicy.model_validate(yaml.safe_load(example.read_text())) == HostPolicy()


def test_a_refusal_names_the_policy_key_and_file_that_would_allow_it(tmp_path):
    """The operator is told which key of which file to edit, for the defaults and for a policy file."""
    doc = spec(containers__image="docker.io/someone/conduit:1")
    (line,) = [line for line in refusals(doc) if "spec.containers.image" in line]
    assert line.endswith("(the default host policy: to allow it, root sets images in /etc/conduit/host.yaml, as in examples/host.yaml)"), line
    policy = (HostPolicy(), "host policy /srv/host.yaml")
    with pytest.raises(SpecError) as refused:
        load_text(dump(doc), "cluster.yaml", SMALL_VPS, policy)
    (line,) = [line for line in refused.value.lines() if "spec.containers.image" in line]
    assert line.endswith("(host policy /srv/host.yaml: to allow it, root adds it to images there)"), line
    (line,) = [line for line in refusals(spec(containers__env={"LD_PRELOAD": "/x.so"})) if "LD_PRELOAD" in line]
    assert line.endswith("(the default host policy)"), line  # no policy key can allow a loader variable


def test_the_example_host_policy_lists_every_key_with_its_default():
    """examples/host.yaml is what an absent /etc/conduit/host.yaml means, key for key."""
    example = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "host.yaml").read_text())
    assert set(example) == set(HostPolicy.model_fields)
    assert HostPolicy.model_validate(example) == HostPolicy()
