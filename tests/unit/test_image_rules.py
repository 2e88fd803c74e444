"""Specs the real `conduit start` of the image's version and build would refuse are refused.

Each rule cites its upstream source (Psiphon-Inc/conduit tags release-cli-*, ssmirr/conduit
master). With the version known before the image is asked (conduit.cli_version or a pinned
tag) the error is one line FILE:LINE:COL: field.path: message.
"""

import pytest

from conduit.errors import SpecError
from conduit.spec.load import load_text
from conduit.render.container import container_props
from conduit.spec.resolve import node_settings
from tests.helpers import SMALL_VPS

OFFICIAL = "ghcr.io/psiphon-inc/conduit/cli"


def text(image: str, conduit: str, overrides: str = "") -> str:
    return f"""apiVersion: conduit.psiphon.ca/v1alpha1
kind: ConduitCluster
metadata:
  name: t
spec:
  containers:
    count: 2
    image: {image}
    resources: {{cpus: 0.2, memory: 256MiB}}
{overrides}  conduit:
    max_clients: 100
    bandwidth_mbps: 5
{conduit}"""


def problems(body: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_text(body, "c.yaml", SMALL_VPS)
    return info.value.lines()


def ok(body: str):
    return load_text(body, "c.yaml", SMALL_VPS)


def command(doc, index=1):
    return container_props(doc, node_settings(doc, index))["command"]


# ---------------------------------------------------------------- bandwidth: every version


@pytest.mark.parametrize("value", ["0.5", "0", "-2", ".nan", ".inf"])
def test_bandwidth_below_1_mbps_is_refused_whatever_the_version(value):
    # 2.0 cli/cmd/start.go:128-130; 1.5 cli/cmd/start.go:106-108; 1.1 internal/config/config.go:103-105
    body = text(f"{OFFICIAL}:latest", "").replace("bandwidth_mbps: 5", f"bandwidth_mbps: {value}")
    (line,) = problems(body)
    message = "must be a finite number" if "inf" in value or "nan" in value else "bandwidth must be at least 1 Mbps (or -1 for unlimited)"
    assert line == f"c.yaml:12:5: spec.conduit.bandwidth_mbps: {message}"


@pytest.mark.parametrize("value", ["-1", "1", "1.5", "40"])
def test_bandwidth_of_1_mbps_or_unlimited_is_accepted(value):
    ok(text(f"{OFFICIAL}:latest", "").replace("bandwidth_mbps: 5", f"bandwidth_mbps: {value}"))


def test_per_index_bandwidth_is_checked_too():
    (line,) = problems(text(f"{OFFICIAL}:latest", "", "    overrides:\n      2: {bandwidth_mbps: 0.5}\n"))
    assert line == "c.yaml:11:11: spec.containers.overrides.2.bandwidth_mbps: bandwidth must be at least 1 Mbps (or -1 for unlimited)"


# ---------------------------------------------------------------- clients


def test_2x_refuses_zero_common_and_no_personal_clients():
    # 2.0 internal/config/config.go:224-227
    (line,) = problems(text(f"{OFFICIAL}:2.0.0", "").replace("max_clients: 100", "max_clients: 0"))
    assert line == (
        "c.yaml:11:5: spec.conduit.max_clients: 0 common clients and no personal clients: the CLI refuses to start "
        "(at least one of --max-common-clients or --max-personal-clients must be greater than 0)"
    )


def test_2x_takes_personal_clients_only():
    doc = ok(text(f"{OFFICIAL}:2.0.0", "    max_personal_clients: 5\n").replace("max_clients: 100", "max_clients: 0"))
    assert command(doc)[:7] == ["start", "-m", "0", "-b", "5", "--max-personal-clients", "5"]


def test_2x_zero_clients_on_one_override_points_at_the_override():
    (line,) = problems(text(f"{OFFICIAL}:2.0.0", "", "    overrides:\n      2: {max_clients: 0}\n"))
    assert line.startswith("c.yaml:11:11: spec.containers.overrides.2.max_clients: 0 common clients")


def test_1x_needs_at_least_one_client():
    # 1.5 cli/cmd/start.go:97-99 ("max-clients must be between 1 and 1000")
    (line,) = problems(text(f"{OFFICIAL}:1.5.0", "").replace("max_clients: 100", "max_clients: 0"))
    assert line == "c.yaml:11:5: spec.conduit.max_clients: a 1.x CLI needs at least 1 client (max-clients must be between 1 and 1000)"


def test_personal_clients_need_2_0():
    # --max-personal-clients appears in 2.0 cli/cmd/start.go:66
    (line,) = problems(text(f"{OFFICIAL}:1.4.0", "    max_personal_clients: 5\n"))
    assert line == f"c.yaml:13:5: spec.conduit.max_personal_clients: {OFFICIAL}:1.4.0 is official 1.4.0: personal clients need a 2.0 image"


def test_personal_clients_with_a_coarse_override_are_refused_on_1x():
    (line,) = problems(text(f"{OFFICIAL}:latest", "    cli_version: 1.x\n    max_personal_clients: 5\n"))
    assert line.startswith("c.yaml:14:5: spec.conduit.max_personal_clients:") and "personal clients need a 2.0 image" in line


# ---------------------------------------------------------------- metrics, stats file


def test_1_1_gets_no_metrics_addr():
    # 1.1 cli/cmd/start.go:62-70 has no --metrics-addr (1.2 start.go:67 adds it)
    doc = ok(text(f"{OFFICIAL}:1.1.0", ""))
    assert command(doc) == ["start", "-m", "100", "-b", "5", "-d", "/home/conduit/data", "--stats-file"]
    assert "--metrics-addr" in command(ok(text(f"{OFFICIAL}:1.2.0", "")))


def test_exact_override_beats_the_tag():
    doc = ok(text(f"{OFFICIAL}:latest", "    cli_version: '1.1'\n"))
    assert "--metrics-addr" not in command(doc)


def test_unknown_image_gets_only_the_flags_every_version_accepts():
    doc = ok(text(f"{OFFICIAL}:latest", ""))
    assert command(doc) == ["start", "-m", "100", "-b", "5", "-d", "/home/conduit/data"]


# ---------------------------------------------------------------- data cap (conduit-monitor)


CAP = "    data_cap: {traffic_limit_gb: 500, period_days: 30}\n"


@pytest.mark.parametrize("tag", ["1.1.0", "1.4.0"])
def test_data_cap_needs_the_monitor_of_1_5(tag):
    # the monitor joins the image at 1.5 cli/Dockerfile:22
    (line,) = problems(text(f"{OFFICIAL}:{tag}", CAP))
    assert line == (
        f"c.yaml:13:5: spec.conduit.data_cap: {OFFICIAL}:{tag} is official {tag}, which has no conduit-monitor: "
        "a data cap needs an official image 1.5.0 or later"
    )


def test_data_cap_refused_on_the_community_build():
    (line,) = problems(text("ghcr.io/ssmirr/conduit/conduit:latest", CAP))
    assert "the community build, which has no conduit-monitor" in line


def test_data_cap_thresholds_follow_the_monitors_flags():
    # 2.0 cli/scripts/monitor/main.go:108-114 (flags), :218-234 (ranges)
    cap = "    data_cap: {traffic_limit_gb: 500, period_days: 30, bandwidth_threshold_percent: 70, min_connections: 20, min_bandwidth_mbps: 2}\n"
    doc = ok(text(f"{OFFICIAL}:2.0.0", cap))
    props = container_props(doc, node_settings(doc, 1))
    assert props["entrypoint"] == ["conduit-monitor"]
    assert props["command"] == [
        "--traffic-limit", "500", "--traffic-period", "30", "--bandwidth-threshold", "70", "--min-connections", "20",
        "--min-bandwidth", "2", "--data-dir", "/home/conduit/data", "--metrics-addr", "127.0.0.1:9090",
        "--", "-m", "100", "-b", "5",
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bandwidth_threshold_percent", 59, "must be >= 60"),
        ("bandwidth_threshold_percent", 91, "must be <= 90"),
        ("min_connections", 0, "must be >= 1"),
        ("min_bandwidth_mbps", 0, "must be >= 1"),
    ],
)
def test_data_cap_threshold_ranges(field, value, message):
    cap = f"    data_cap: {{traffic_limit_gb: 500, period_days: 30, {field}: {value}}}\n"
    (line,) = problems(text(f"{OFFICIAL}:2.0.0", cap))
    assert line.endswith(f"spec.conduit.data_cap.{field}: {message}")


# ---------------------------------------------------------------- reduced hours (2.0 --set)


REDUCED = "    reduced_hours: {start: '22:00', end: '6:30', max_clients: 10, bandwidth_mbps: 2}\n"


def test_reduced_hours_render_as_set_overrides():
    # 2.0 cli/internal/config/set_overrides.go:28-32; bytes/s as config.go:245 converts
    args = command(ok(text(f"{OFFICIAL}:2.0.0", REDUCED)))
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    assert sets == [
        "InproxyReducedStartTime=22:00",
        "InproxyReducedEndTime=6:30",
        "InproxyReducedMaxCommonClients=10",
        "InproxyReducedLimitUpstreamBytesPerSecond=250000",
        "InproxyReducedLimitDownstreamBytesPerSecond=250000",
    ]


def test_reduced_hours_need_2_0():
    (line,) = problems(text(f"{OFFICIAL}:1.5.0", REDUCED))
    assert line == f"c.yaml:13:5: spec.conduit.reduced_hours: {OFFICIAL}:1.5.0 is official 1.5.0: reduced hours need a 2.0 image (--set)"


@pytest.mark.parametrize(
    ("reduced", "where", "message"),
    [
        ("{start: '24:00', end: '06:00', max_clients: 1}", "start", "'24:00' is not a time of day (HH:MM, 24-hour, UTC)"),
        ("{start: '22:00', end: '6:5', max_clients: 1}", "end", "'6:5' is not a time of day (HH:MM, 24-hour, UTC)"),
        ("{start: '22:00', end: '22:00', max_clients: 1}", "", "start and end are equal: reduced all day is not a valid configuration"),
        ("{start: '22:00', end: '06:00', max_clients: 0}", "max_clients", "must be >= 1"),
    ],
)
def test_reduced_hours_are_parsed_as_upstream_parses_them(reduced, where, message):
    # psiphon-tunnel-core psiphon/config.go Commit: ParseTimeOfDayMinutes (time.Parse "15:04"),
    # start != end, reduced max clients > 0
    (line,) = problems(text(f"{OFFICIAL}:2.0.0", f"    reduced_hours: {reduced}\n"))
    path = "spec.conduit.reduced_hours" + (f".{where}" if where else "")
    assert line.endswith(f"{path}: {message}")


def test_reduced_clients_may_not_exceed_the_nodes():
    (line,) = problems(text(f"{OFFICIAL}:2.0.0", "    reduced_hours: {start: '22:00', end: '06:00', max_clients: 200}\n"))
    assert line == "c.yaml:13:51: spec.conduit.reduced_hours.max_clients: 200 is more than the 100 max clients of conduit-1; reduced hours may only lower it"


# ---------------------------------------------------------------- community build


def test_idle_restart_is_the_community_builds():
    # ssmirr cli/cmd/start.go:74 (flag), :119-130 (parse, at least 30m)
    doc = ok(text("ghcr.io/ssmirr/conduit/conduit:latest", "    idle_restart: 1h30m\n"))
    assert command(doc)[5:7] == ["--idle-restart", "1h30m"]
    (line,) = problems(text(f"{OFFICIAL}:2.0.0", "    idle_restart: 1h\n"))
    assert line == (
        f"c.yaml:13:5: spec.conduit.idle_restart: {OFFICIAL}:2.0.0 is official 2.0.0: --idle-restart exists only in "
        "the community build (ghcr.io/ssmirr/conduit/conduit)"
    )


@pytest.mark.parametrize(("value", "message"), [("20m", "idle-restart must be at least 30m"), ("1 hour", "invalid idle-restart duration '1 hour' (use a Go duration like 30m, 1h, 2h)")])
def test_idle_restart_duration(value, message):
    (line,) = problems(text("ghcr.io/ssmirr/conduit/conduit:latest", f"    idle_restart: {value}\n"))
    assert line == f"c.yaml:13:5: spec.conduit.idle_restart: {message}"


def test_build_override_makes_any_image_the_community_build():
    doc = ok(text("registry.example/conduit:latest", "    build: community\n    extra_args: [--geo]\n"))
    assert command(doc)[-2:] == ["--stats-file", "--geo"]


# ---------------------------------------------------------------- extra_args


def test_extra_args_must_be_flags_the_image_lists():
    (line,) = problems(text(f"{OFFICIAL}:2.0.0", "    extra_args: [--set, EmitDiagnosticNotices=true, --geo]\n"))
    assert line == (
        f"c.yaml:13:53: spec.conduit.extra_args.2: --geo is not a flag of official 2.0.0's conduit start "
        "(the community build's flag); it would exit at start"
    )


def test_extra_args_of_an_unknown_image_wait_for_the_image():
    ok(text(f"{OFFICIAL}:latest", "    extra_args: [--geo]\n"))


def test_stats_file_in_extra_args_refused_on_2_0():
    lines = problems(text(f"{OFFICIAL}:2.0.0", "    extra_args: ['--stats-file=x.json']\n"))
    assert any("--stats-file is not a flag of official 2.0.0" in line for line in lines)
    # and on any version, the stats file is the tool's to name
    assert any("--stats-file is set by the tool from the spec" in line for line in lines)
