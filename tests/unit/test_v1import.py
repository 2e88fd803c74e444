import base64
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conduit.spec.load import load_text
from conduit.facts.v1settings import SettingsError, parse_settings
from conduit.features.v1import import (
    ImportRefused, build_spec, cli_version_of, node_flags, pinned_image_settings, render, telegram_secrets, write_secrets,
)
from conduit.errors import SpecError
from conduit.spec.policy import HostPolicy
from tests.helpers import SMALL_VPS

SETTINGS = """# Conduit Manager settings
MAX_CLIENTS=200
BANDWIDTH='5'
CONTAINER_COUNT="3"
DOCKER_CPUS=0.5
DOCKER_MEMORY=512m
MAX_CLIENTS_2=300
BANDWIDTH_3=-1
CPUS_3=0.4
TELEGRAM_BOT_TOKEN="123456:ABC-secret"
TELEGRAM_CHAT_ID=-100200
TELEGRAM_SERVER_LABEL="edge one"
DATA_CAP_GB=50
SOMETHING_NEW=1
EMPTY=
export TRACKER_ENABLED=true
"""


def test_settings_are_read_as_data():
    s = parse_settings(SETTINGS)
    assert s.values["BANDWIDTH"] == "5" and s.values["CONTAINER_COUNT"] == "3" and s.values["EMPTY"] == ""
    assert s.values["TELEGRAM_SERVER_LABEL"] == "edge one" and s.values["TRACKER_ENABLED"] == "true"
    assert s.unknown == ["SOMETHING_NEW", "EMPTY"]


def test_a_command_in_the_file_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    s = parse_settings(f"MAX_CLIENTS=$(touch {marker})\nBANDWIDTH=`touch {marker}`\n")
    assert not marker.exists() and s.values["MAX_CLIENTS"].startswith("$(touch")


def test_bad_line_names_the_line():
    with pytest.raises(SettingsError, match=r"^s.conf:2: not a KEY=VALUE line"):
        parse_settings("A=1\nrm -rf /\n", "s.conf")


@given(st.text(max_size=300))
def test_parser_returns_settings_or_its_own_error(text):
    try:
        parse_settings(text)
    except SettingsError:
        pass


def test_spec_adopts_the_install(tmp_path):
    found = [
        {"index": 1, "name": "conduit", "image": "ghcr.io/psiphon-inc/conduit/cli:1.5.0", "volume": "conduit-data", "data_dir": "/home/conduit/data", "network": "host"},
        {"index": 2, "name": "conduit-2", "image": "ghcr.io/psiphon-inc/conduit/cli:1.5.0", "volume": "conduit-data-2", "data_dir": "/home/conduit/data", "network": "host"},
    ]
    doc, warnings = build_spec(parse_settings(SETTINGS), found, "conduit", "edge", tmp_path / "secrets", 9090)
    spec = doc["spec"]
    assert spec["containers"]["naming"] == {"scheme": "v1", "prefix": "conduit", "volume_prefix": "conduit-data"}
    assert spec["containers"]["count"] == 3 and spec["network"] == {"mode": "host"}
    assert spec["containers"]["resources"] == {"cpus": 0.5, "memory": "512MiB"}
    assert spec["containers"]["overrides"] == {2: {"max_clients": 300}, 3: {"bandwidth_mbps": -1, "cpus": 0.4}}
    assert spec["conduit"]["max_clients"] == 200 and spec["conduit"]["bandwidth_mbps"] == 5
    assert "data_cap" not in spec["conduit"] and spec["budget"] == {"monthly_gb": 50, "action": "stop"}  # host-wide, as the manager counted
    assert "bot" not in spec["alerts"]["telegram"]  # TELEGRAM_ENABLED unset: the manager ran no bot
    token = spec["alerts"]["telegram"]["bot_token"]["file"]
    assert token == str(tmp_path / "secrets/edge-telegram-token")
    write_secrets(telegram_secrets(parse_settings(SETTINGS), "edge", tmp_path / "secrets"), replace=False)
    assert (tmp_path / "secrets/edge-telegram-token").read_text() == "123456:ABC-secret\n"
    assert stat.S_IMODE((tmp_path / "secrets/edge-telegram-token").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    text = render(doc, "settings.conf")
    assert "123456:ABC-secret" not in text and token in text
    loaded = load_text(text, "cluster.yaml", SMALL_VPS.__class__(vcpus=4, memory=8 << 30, nic_mbps=1000, nofile_limit=20000))
    assert loaded.spec.containers.count == 3


@pytest.mark.parametrize(
    ("command", "version"),
    [
        ("conduit start --max-clients 200 --bandwidth 5 --stats-file", "1.x"),
        ("conduit start -m 200 -b 5 --stats-file=/data/s.json", "1.x"),
        ("conduit start --max-common-clients 50 -d /home/conduit/data", "2.x"),
        ("conduit start -m 200 -b 5", None),
    ],
)
def test_the_nodes_own_command_tells_the_cli_version(command, version):
    assert cli_version_of(command.split()) == version


def test_the_found_nodes_cli_version_goes_into_the_spec(tmp_path):
    node = {"index": 1, "name": "conduit", "image": "ghcr.io/ssmirr/conduit/conduit:latest", "volume": "conduit-data",
            "data_dir": "/home/conduit/data", "network": "host", "cli_version": "1.x"}  # fmt: skip
    settings = parse_settings("MAX_CLIENTS=200\nDATA_CAP_BASELINE_RX=1\nDATA_CAP_BASELINE_TX=2\nDATA_CAP_PRIOR_USAGE=0\n")
    assert settings.unknown == []
    doc, _ = build_spec(settings, [node], "conduit", "c", tmp_path, 9090)
    assert doc["spec"]["conduit"]["cli_version"] == "1.x"
    doc, _ = build_spec(settings, [node | {"cli_version": None}], "conduit", "c", tmp_path, 9090)
    assert doc["spec"]["conduit"]["cli_version"] == "auto"


def test_spec_pins_what_the_running_community_image_said(tmp_path):
    """The SamNet v1.2 manager runs ghcr.io/ssmirr/conduit/conduit:latest: 1.x flags, --geo, no monitor."""
    from pathlib import Path

    from conduit.spec.image import from_probe
    from conduit.spec.resolve import image_facts

    image = "ghcr.io/ssmirr/conduit/conduit:latest"
    help_text = (Path(__file__).resolve().parents[1] / "fixtures/cli-help/community.txt").read_text()
    facts = from_probe(image, "sha256:abc", "conduit version cc08a09\n", help_text, False)
    found = [{"index": 1, "name": "conduit", "image": image, "image_id": "sha256:abc", "volume": "conduit-data", "data_dir": "/home/conduit/data", "network": "host"}]
    doc, _ = build_spec(parse_settings("MAX_CLIENTS=200\nBANDWIDTH=5\n"), found, "conduit", "edge", tmp_path / "s", 9090, facts)
    assert doc["spec"]["conduit"]["cli_version"] == "1.x" and doc["spec"]["conduit"]["build"] == "community"
    loaded = image_facts(load_text(render(doc, "settings.conf"), "c.yaml", SMALL_VPS))
    assert loaded.build == "community" and loaded.cli == "1.x" and loaded.has_monitor is False


def test_spec_pins_an_official_release_by_its_version(tmp_path):
    from conduit.spec.image import PROFILES, ImageFacts

    p = PROFILES["official-1.4"]
    facts = ImageFacts("x", "image", "1.4.0", "official", p.flags, exact=True, has_monitor=False)
    assert pinned_image_settings(facts) == {"cli_version": "1.4", "build": "official"}
    assert pinned_image_settings(None) == {"cli_version": "auto"}


# ------------------------------------------------------------------ under the default host policy

NODE = {"index": 1, "name": "conduit", "image": "ghcr.io/psiphon-inc/conduit/cli:1.5.0", "image_id": "sha256:" + "a" * 64,
        "volume": "conduit-data", "data_dir": "/home/conduit/data", "network": "host"}  # fmt: skip
DEFAULTS = (HostPolicy(), "the default host policy")


def test_the_telegram_files_are_where_the_default_policy_allows_them():
    secrets_dir = Path(HostPolicy().secrets.file_dirs[0])
    doc, _ = build_spec(parse_settings(SETTINGS), [NODE], "conduit", "edge", secrets_dir, 9090)
    assert doc["spec"]["alerts"]["telegram"]["bot_token"] == {"file": "/etc/conduit/secrets/edge-telegram-token"}
    loaded = load_text(render(doc, "settings.conf"), "cluster.yaml", SMALL_VPS, DEFAULTS)
    assert loaded.spec.alerts.telegram is not None


def test_a_spec_naming_files_elsewhere_is_refused_by_the_default_policy(tmp_path):
    doc, _ = build_spec(parse_settings(SETTINGS), [NODE], "conduit", "edge", tmp_path, 9090)
    with pytest.raises(SpecError, match="must be a normal absolute path under /etc/conduit/secrets"):
        load_text(render(doc, "settings.conf"), "cluster.yaml", SMALL_VPS, DEFAULTS)


def test_no_secrets_dir_in_the_policy_refuses_the_bot_in_one_line():
    with pytest.raises(ImportRefused) as refused:
        build_spec(parse_settings(SETTINGS), [NODE], "conduit", "edge", None, 9090)
    assert "secrets.file_dirs is empty" in str(refused.value) and "\n" not in str(refused.value)
    assert "ABC-secret" not in str(refused.value)
    doc, _ = build_spec(parse_settings("MAX_CLIENTS=5\n"), [NODE], "conduit", "edge", None, 9090)
    assert "alerts" not in doc["spec"]


def test_an_existing_secret_file_with_another_value_is_kept(tmp_path):
    files = telegram_secrets(parse_settings(SETTINGS), "edge", tmp_path)
    write_secrets(files, replace=False)
    write_secrets(files, replace=False)  # the same values again: nothing to refuse
    token = tmp_path / "edge-telegram-token"
    token.write_text("9:other\n")
    with pytest.raises(ImportRefused, match="exists with another value; remove it or run import-v1 with --force"):
        write_secrets(files, replace=False)
    assert token.read_text() == "9:other\n"
    write_secrets(files, replace=True)
    assert token.read_text() == "123456:ABC-secret\n"


def test_a_node_known_only_by_its_image_id_is_refused():
    unnamed = NODE | {"image": None}
    with pytest.raises(ImportRefused, match=r"^conduit runs image sha256:aaaaaaaaaaaa which has no repository:tag; pin an image"):
        build_spec(parse_settings("MAX_CLIENTS=5\n"), [unnamed], "conduit", "edge", None, 9090)


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("start --max-clients 200 --bandwidth 5 --stats-file", {"max_clients": 200, "bandwidth_mbps": 5}),
        ("start -m 50 -b 2.5", {"max_clients": 50, "bandwidth_mbps": 2.5}),
        ("start --max-common-clients=80 -b -1", {"max_clients": 80, "bandwidth_mbps": -1}),
        ("start --max-clients nope -b", {}),
        ("start -m -3", {}),
    ],
)
def test_the_nodes_command_line_says_its_limits(command, flags):
    assert node_flags(command.split()) == flags


@given(st.lists(st.sampled_from(["-m", "-b", "--max-clients", "--bandwidth", "--max-common-clients=7", "-d", "x"])
                | st.text(max_size=12), max_size=12))
def test_command_line_parsing_never_fails(words):
    flags = node_flags(words)
    assert set(flags) <= {"max_clients", "bandwidth_mbps"}
    assert isinstance(flags.get("max_clients", 0), int) and flags.get("max_clients", 0) >= 0


def test_limits_come_from_the_containers_when_the_settings_name_none():
    nodes = [NODE | {"flags": {"max_clients": 200, "bandwidth_mbps": 5}},
             NODE | {"index": 2, "name": "conduit-2", "volume": "conduit-data-2", "flags": {"max_clients": 150, "bandwidth_mbps": 5}},
             NODE | {"index": 3, "name": "conduit-3", "volume": "conduit-data-3", "flags": {"max_clients": 90, "bandwidth_mbps": 1}}]  # fmt: skip
    doc, _ = build_spec(parse_settings("CONTAINER_COUNT=3\nMAX_CLIENTS_3=70\n"), nodes, "conduit", "edge", None, 9090)
    spec = doc["spec"]
    assert spec["conduit"]["max_clients"] == 200 and spec["conduit"]["bandwidth_mbps"] == 5
    # the settings file's MAX_CLIENTS_3 wins over the node's own 90; its bandwidth comes from its command
    assert spec["containers"]["overrides"] == {2: {"max_clients": 150}, 3: {"max_clients": 70, "bandwidth_mbps": 1}}
    loaded = load_text(render(doc, "settings.conf"), "cluster.yaml", SMALL_VPS.__class__(vcpus=4, memory=8 << 30, nic_mbps=1000, nofile_limit=20000), DEFAULTS)
    assert loaded.spec.conduit.max_clients == 200


def test_the_managers_bot_reports_and_monthly_cap_are_carried_over():
    fixture = Path(__file__).parent.parent / "fixtures/samnet-v1.2/settings.conf"
    doc, warnings = build_spec(parse_settings(fixture.read_text()), [NODE], "conduit", "edge", Path("/etc/conduit/secrets"), 9090)
    spec = doc["spec"]
    assert spec["alerts"]["telegram"]["bot"] == {"poll": True, "reports": {"every_hours": 6, "start_hour": 0, "daily": True, "weekly": True}}
    assert spec["budget"] == {"monthly_gb": 50, "action": "stop"}
    loaded = load_text(render(doc, "settings.conf"), "cluster.yaml", SMALL_VPS, DEFAULTS)
    assert loaded.spec.budget.monthly_gb == 50 and loaded.spec.alerts.telegram.bot.reports.every_hours == 6


def test_a_cap_period_other_than_a_month_is_said():
    doc, warnings = build_spec(parse_settings("DATA_CAP_GB=200\nDATA_CAP_PERIOD_DAYS=7\n"), [NODE], "conduit", "edge", None, 9090)
    assert doc["spec"]["budget"]["monthly_gb"] == 200 and any("DATA_CAP_PERIOD_DAYS=7" in w for w in warnings)
