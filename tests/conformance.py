"""What the real Conduit CLI does with a given command line, one row per upstream rule.

Each row names the upstream source it comes from, the image profiles it applies to,
the argv given to the image (`conduit ...`, or `conduit-monitor ...`), what the node
then does (exit code, text on stderr/stdout) and the cluster.yaml fragment that
would make the reconciler emit such flags (`spec`), with what the reconciler must
do about it (`tool`: "refuse" the spec before touching a container, "accept" it and
render the row's flags, or "omit": accept it and leave out the flag that image refuses).

tests/integration/test_standin_conformance.py checks every row against the
stand-in image of each profile; the reconciler's side reads the same rows.

An accepted `start` keeps running: the stand-in is run with STANDIN_EXIT_AFTER
so that "it got past its start-up checks" reads as exit code 3 (ACCEPTED).
"""

from __future__ import annotations

from dataclasses import dataclass, field

OFFICIAL_1X = ("1.1", "1.2", "1.3", "1.4", "1.5")
OFFICIAL = (*OFFICIAL_1X, "2.0")
ALL = (*OFFICIAL, "community")
ONE_X = (*OFFICIAL_1X, "community")
MONITOR = ("1.5", "2.0")
NO_MONITOR = ("1.1", "1.2", "1.3", "1.4", "community")

# profile -> (cli_version, build) for tests/standin/build
PROFILES: dict[str, tuple[str | None, str]] = {
    "1.1": ("1.1.0", "official"),
    "1.2": ("1.2.0", "official"),
    "1.3": ("1.3.0", "official"),
    "1.4": ("1.4.0", "official"),
    "1.5": ("1.5.0", "official"),
    "2.0": ("2.0.0", "official"),
    "community": (None, "community"),
}
VERSION_OUTPUT = {
    "1.1": "conduit version 1.1.0", "1.2": "conduit version 1.2.0", "1.3": "conduit version 1.3.0",
    "1.4": "conduit version 1.4.0", "1.5": "conduit version 1.5.0", "2.0": "conduit version 2.0.0",
    "community": "conduit version cc08a09",
}

ACCEPTED = 3  # STANDIN_EXIT_AFTER's code: the node started and ran
REFUSED = 1   # main.go: any error from cobra's Execute exits 1

PI = "Psiphon-Inc/conduit release-cli-"
SS = "ssmirr/conduit master cc08a09 "


@dataclass(frozen=True)
class Rule:
    rule: str
    source: str
    profiles: tuple[str, ...]
    argv: tuple[str, ...]
    exit: int
    stderr: str = ""           # substring expected on stderr
    stdout: str = ""           # substring expected on stdout
    absent: str = ""           # must appear in neither stream
    stdin: str | None = None
    spec: dict = field(default_factory=dict)
    tool: str = "accept"       # "refuse" | "accept" | "omit" (accepted, the refused flag left out)

    def entrypoint(self) -> str:
        return self.argv[0]

    def args(self) -> list[str]:
        return list(self.argv[1:])


def _start(*flags: str) -> tuple[str, ...]:
    return ("conduit", "start", "-d", "/home/conduit/data", *flags)


RULES: list[Rule] = [
    # ------------------------------------------------------------ bandwidth
    Rule("bandwidth-below-1-refused", f"{PI}2.0.0 cli/cmd/start.go:128-130; {PI}1.5.0 cli/cmd/start.go:107; "
         f"{PI}1.1.0 cli/internal/config/config.go:103-105", ALL, _start("-b", "0.5"), REFUSED,
         stderr="bandwidth must be at least 1 Mbps (or -1 for unlimited)",
         spec={"conduit": {"bandwidth_mbps": 0.5}}, tool="refuse"),
    Rule("bandwidth-0-refused-from-1.3", f"{PI}1.3.0 cli/cmd/start.go:103-111", (*OFFICIAL_1X[2:], "2.0", "community"),
         _start("-b", "0"), REFUSED, stderr="bandwidth must be at least 1 Mbps (or -1 for unlimited)",
         spec={"conduit": {"bandwidth_mbps": 0}}, tool="refuse"),
    Rule("bandwidth-0-means-default-before-1.3", f"{PI}1.1.0 cli/internal/config/config.go:99-102", ("1.1", "1.2"),
         _start("-b", "0"), ACCEPTED, spec={"conduit": {"bandwidth_mbps": 0}}, tool="refuse"),
    Rule("bandwidth-negative-refused", f"{PI}2.0.0 cli/cmd/start.go:128-130", ALL, _start("-b", "-2"), REFUSED,
         stderr="bandwidth must be at least 1 Mbps (or -1 for unlimited)",
         spec={"conduit": {"bandwidth_mbps": -2}}, tool="refuse"),
    Rule("bandwidth-unlimited", f"{PI}2.0.0 cli/internal/config/config.go:242-243", ALL, _start("-b", "-1"), ACCEPTED,
         spec={"conduit": {"bandwidth_mbps": -1}}),
    Rule("bandwidth-1-accepted", f"{PI}2.0.0 cli/cmd/start.go:128", ALL, _start("-b", "1"), ACCEPTED,
         spec={"conduit": {"bandwidth_mbps": 1}}),
    Rule("bandwidth-not-a-number", "spf13/pflag v1.0.5 float64.go (cobra v1.8.1)", ALL, _start("-b", "fast"), REFUSED,
         stderr='invalid argument "fast" for "-b, --bandwidth" flag: strconv.ParseFloat: parsing "fast": invalid syntax',
         tool="refuse"),
    # ------------------------------------------------------------ max clients, 2.0
    Rule("2.0-common-and-personal-both-0", f"{PI}2.0.0 cli/internal/config/config.go:224-227", ("2.0",),
         _start("-m", "0", "--max-personal-clients", "0"), REFUSED,
         stderr="at least one of --max-common-clients or --max-personal-clients must be greater than 0",
         spec={"conduit": {"max_clients": 0, "max_personal_clients": 0}}, tool="refuse"),
    Rule("2.0-common-0-alone", f"{PI}2.0.0 cli/internal/config/config.go:224-227", ("2.0",), _start("-m", "0"), REFUSED,
         stderr="at least one of --max-common-clients or --max-personal-clients must be greater than 0",
         spec={"conduit": {"max_clients": 0}}, tool="refuse"),
    Rule("2.0-personal-needs-compartment", f"{PI}2.0.0 cli/internal/config/config.go:231-233", ("2.0",),
         _start("--max-personal-clients", "5"), REFUSED,
         stderr="create compartment first with new-compartment-id command",
         # the reconciler creates the compartment first (conduit/reconciler/compartment.py)
         spec={"conduit": {"max_personal_clients": 5}}, tool="accept"),
    Rule("2.0-personal-with-compartment", f"{PI}2.0.0 cli/internal/config/config.go:195-233", ("2.0",),
         _start("--max-personal-clients", "5", "--compartment-id", "A" * 42 + "E"), ACCEPTED,
         spec={"conduit": {"max_personal_clients": 5, "extra_args": ["--compartment-id", "A" * 42 + "E"]}}),
    Rule("2.0-compartment-id-malformed", f"{PI}2.0.0 cli/internal/config/compartment.go NormalizePersonalCompartmentInput",
         ("2.0",), _start("--compartment-id", "abc"), REFUSED, stderr="invalid compartment id or token",
         spec={"conduit": {"extra_args": ["--compartment-id", "abc"]}}, tool="refuse"),
    Rule("2.0-common-above-1000", f"{PI}2.0.0 cli/cmd/start.go:95-97", ("2.0",), _start("-m", "1001"), REFUSED,
         stderr="max-common-clients must be between 0 and 1000", spec={"conduit": {"max_clients": 1001}}, tool="refuse"),
    Rule("2.0-personal-negative", f"{PI}2.0.0 cli/cmd/start.go:104-106", ("2.0",),
         _start("--max-personal-clients", "-1"), REFUSED, stderr="max-personal-clients must be between 0 and 1000",
         spec={"conduit": {"max_personal_clients": -1}}, tool="refuse"),
    Rule("2.0-set-unknown-key", f"{PI}2.0.0 cli/internal/config/set_overrides.go:19-33,ParseSetOverrides", ("2.0",),
         _start("--set", "Foo=1"), REFUSED, stderr='unsupported --set key "Foo"',
         spec={"conduit": {"extra_args": ["--set", "Foo=1"]}}, tool="refuse"),
    Rule("2.0-set-reduced-hours", f"{PI}2.0.0 cli/internal/config/set_overrides.go:19-33", ("2.0",),
         _start("--set", "InproxyReducedStartTime=22:00", "--set", "InproxyReducedMaxCommonClients=5"), ACCEPTED,
         spec={"conduit": {"extra_args": ["--set", "InproxyReducedStartTime=22:00", "--set", "InproxyReducedMaxCommonClients=5"]}}),
    Rule("2.0-set-int-typed", f"{PI}2.0.0 cli/internal/config/set_overrides.go ParseSetOverrides", ("2.0",),
         _start("--set", "InproxyReducedMaxCommonClients=many"), REFUSED,
         stderr="invalid --set value for InproxyReducedMaxCommonClients: expected integer", tool="refuse"),
    # ------------------------------------------------------------ max clients, 1.x
    Rule("1.x-max-clients-0-refused-from-1.3", f"{PI}1.3.0 cli/cmd/start.go:95-101", ("1.3", "1.4", "1.5", "community"),
         _start("-m", "0"), REFUSED, stderr="max-clients must be between 1 and 1000",
         spec={"conduit": {"max_clients": 0}}, tool="refuse"),
    Rule("1.x-max-clients-0-means-default-before-1.3", f"{PI}1.1.0 cli/internal/config/config.go:90-94", ("1.1", "1.2"),
         _start("-m", "0"), ACCEPTED, spec={"conduit": {"max_clients": 0}}, tool="refuse"),
    Rule("1.x-max-clients-above-1000", f"{PI}1.5.0 cli/internal/config/config.go (max-clients must be between 1 and 1000)",
         ONE_X, _start("-m", "1001"), REFUSED, stderr="max-clients must be between 1 and 1000",
         spec={"conduit": {"max_clients": 1001}}, tool="refuse"),
    Rule("1.x-max-clients-1000", f"{PI}1.5.0 cli/internal/config/config.go", ONE_X, _start("-m", "1000"), ACCEPTED,
         spec={"conduit": {"max_clients": 1000}}),
    Rule("short-flags-everywhere", "FACTS: -m -b -d exist in every version", ALL, _start("-m", "5", "-b", "5", "-v"),
         ACCEPTED, spec={"conduit": {"max_clients": 5, "bandwidth_mbps": 5, "verbosity": 1}}),
    Rule("max-clients-not-a-number", "spf13/pflag v1.0.5 int.go", ALL, _start("-m", "lots"), REFUSED,
         stderr='strconv.ParseInt: parsing "lots": invalid syntax', tool="refuse"),
    # ------------------------------------------------------------ flags that exist only in some versions
    Rule("1.x-has-no-max-common-clients", f"{PI}1.5.0 cli/cmd/start.go:60-70", ONE_X,
         _start("--max-common-clients", "5"), REFUSED, stderr="unknown flag: --max-common-clients",
         spec={"conduit": {"cli_version": "2.x"}}, tool="refuse"),
    Rule("2.0-has-no-max-clients", f"{PI}2.0.0 cli/cmd/start.go:65-71", ("2.0",), _start("--max-clients", "5"),
         REFUSED, stderr="unknown flag: --max-clients", spec={"conduit": {"cli_version": "1.x"}}, tool="refuse"),
    Rule("2.0-has-no-stats-file", f"{PI}2.0.0 cli/cmd/start.go:65-71", ("2.0",), _start("--stats-file"), REFUSED,
         stderr="unknown flag: --stats-file", spec={"conduit": {"cli_version": "1.x"}}, tool="refuse"),
    Rule("2.0-has-no-s", f"{PI}2.0.0 cli/cmd/start.go:65-71", ("2.0",), _start("-s"), REFUSED,
         stderr="unknown shorthand flag: 's' in -s", tool="refuse"),
    Rule("1.x-stats-file", f"{PI}1.1.0 cli/cmd/start.go:64-65", ONE_X, _start("-s"), ACCEPTED,
         spec={"conduit": {"cli_version": "1.x"}}),
    Rule("1.x-has-no-personal-clients", f"{PI}1.5.0 cli/cmd/start.go:60-70", ONE_X,
         _start("--max-personal-clients", "1"), REFUSED, stderr="unknown flag: --max-personal-clients",
         spec={"conduit": {"max_personal_clients": 1}}, tool="refuse"),
    Rule("1.x-has-no-set", f"{PI}1.5.0 cli/cmd/start.go:60-70", ONE_X, _start("--set", "InproxyReducedStartTime=1"),
         REFUSED, stderr="unknown flag: --set", tool="refuse"),
    Rule("1.1-has-no-metrics-addr", f"{PI}1.1.0 cli/cmd/start.go:62-69", ("1.1",),
         _start("--metrics-addr", "127.0.0.1:9090"), REFUSED, stderr="unknown flag: --metrics-addr",
         # the reconciler renders no --metrics-addr for 1.1 (the gate reads the start line)
         spec={"conduit": {"metrics_port_base": 9090}}, tool="omit"),
    Rule("metrics-addr-from-1.2", f"{PI}1.2.0 cli/cmd/start.go:67", ("1.2", "1.3", "1.4", "1.5", "2.0", "community"),
         _start("--metrics-addr", "127.0.0.1:0"), ACCEPTED, spec={"conduit": {"metrics_port_base": 9090}}),
    Rule("1.1-1.2-hide-psiphon-config", f"{PI}1.1.0 cli/cmd/start.go:67-70 (config embedded in the image)",
         ("1.1", "1.2"), _start("-c", "/nonexistent.json"), REFUSED, stderr="unknown shorthand flag: 'c' in -c",
         tool="refuse"),
    Rule("psiphon-config-must-exist", f"{PI}1.3.0 cli/cmd/start.go:79-82; {PI}2.0.0 cli/cmd/start.go:79-82",
         ("1.3", "1.4", "1.5", "2.0", "community"), _start("-c", "/nonexistent.json"), REFUSED,
         stderr="psiphon config file not found: /nonexistent.json", tool="refuse"),
    Rule("geo-only-community", f"{SS}cli/cmd/start.go:71", OFFICIAL, _start("--geo"), REFUSED,
         stderr="unknown flag: --geo", spec={"conduit": {"extra_args": ["--geo"]}}, tool="refuse"),
    Rule("geo-community", f"{SS}cli/cmd/start.go:71", ("community",), _start("--geo", "-s"), ACCEPTED,
         spec={"conduit": {"extra_args": ["--geo"]}}),
    Rule("idle-restart-only-community", f"{SS}cli/cmd/start.go:74", OFFICIAL, _start("--idle-restart", "1h"), REFUSED,
         stderr="unknown flag: --idle-restart", spec={"conduit": {"extra_args": ["--idle-restart", "1h"]}},
         tool="refuse"),
    Rule("idle-restart-community", f"{SS}cli/cmd/start.go:120-130", ("community",), _start("--idle-restart", "1h"),
         ACCEPTED, spec={"conduit": {"extra_args": ["--idle-restart", "1h"]}}),
    Rule("idle-restart-at-least-30m", f"{SS}cli/cmd/start.go:126-128", ("community",),
         _start("--idle-restart", "10m"), REFUSED, stderr="idle-restart must be at least 30m",
         spec={"conduit": {"extra_args": ["--idle-restart", "10m"]}}, tool="refuse"),
    # ------------------------------------------------------------ cobra behaviour
    Rule("unknown-flag", "spf13/cobra v1.8.1 (Error: unknown flag, then the usage, exit 1)", ALL, _start("--bogus"),
         REFUSED, stderr="Error: unknown flag: --bogus\nUsage:\n  conduit start [flags]",
         spec={"conduit": {"extra_args": ["--bogus"]}}, tool="refuse"),
    Rule("flag-needs-argument", "spf13/pflag v1.0.5 flag.go parseLongArg", ALL, _start("--bandwidth"), REFUSED,
         stderr="flag needs an argument: --bandwidth", tool="refuse"),
    Rule("start-ignores-positional-args", "spf13/cobra v1.8.1 legacyArgs (subcommands take any args)", ALL,
         _start("extra"), ACCEPTED),
    Rule("unknown-command", "spf13/cobra v1.8.1 legacyArgs", ALL, ("conduit", "serve"), REFUSED,
         stderr="Error: unknown command \"serve\" for \"conduit\"\nRun 'conduit --help' for usage."),
    Rule("version", f"{PI}2.0.0 cli/cmd/root.go:35-43 (cobra version template)", ALL, ("conduit", "--version"), 0),
    Rule("help-2.0-flags", f"{PI}2.0.0 cli/cmd/start.go:65-71", ("2.0",), ("conduit", "start", "--help"), 0,
         stdout="  -m, --max-common-clients int     maximum number of common proxy clients (0-1000) (default 50)"),
    Rule("help-1.x-flags", f"{PI}1.5.0 cli/cmd/start.go:60-70", ONE_X, ("conduit", "start", "--help"), 0,
         stdout="  -m, --max-clients int"),
    Rule("help-1.1-no-metrics-addr", f"{PI}1.1.0 cli/cmd/start.go:62-69", ("1.1",), ("conduit", "start", "--help"), 0,
         stdout="--stats-file string[=\"stats.json\"]", absent="--metrics-addr"),
    Rule("help-community-geo", f"{SS}cli/cmd/start.go:67-74", ("community",), ("conduit", "start", "--help"), 0,
         stdout="      --idle-restart string"),
    Rule("help-official-no-geo", f"{PI}2.0.0 cli/cmd/start.go:65-71", OFFICIAL, ("conduit", "start", "--help"), 0,
         absent="--geo"),
    Rule("new-compartment-id-2.0", f"{PI}2.0.0 cli/cmd/new_compartment_id.go", ("2.0",),
         ("conduit", "new-compartment-id", "-d", "/home/conduit/data", "--name", "node"), 0,
         stdout="Saved compartment ID to /home/conduit/data/personal_compartment.json\nShare token:\n"),
    Rule("new-compartment-id-not-in-1.x", f"{PI}1.5.0 cli/cmd (no new_compartment_id.go)", ONE_X,
         ("conduit", "new-compartment-id"), REFUSED, stderr='unknown command "new-compartment-id" for "conduit"'),
    Rule("ryve-claim-asks-first", f"{PI}2.0.0 cli/cmd/ryve.go:71-81", ALL, ("conduit", "ryve-claim", "-d", "/tmp/x"),
         0, stdin="n\n", stdout="Continue? (y/n) Aborted."),
    Rule("ryve-claim-needs-a-key", f"{PI}2.0.0 cli/cmd/ryve.go:85-92", ALL, ("conduit", "ryve-claim", "-d", "/tmp/x"),
         REFUSED, stdin="y\n", stdout="Start your station first to create a key", stderr="Error: missing key"),
    # ------------------------------------------------------------ conduit-monitor
    Rule("monitor-only-official-1.5+", f"{PI}1.5.0 cli/Dockerfile:22", NO_MONITOR,
         ("conduit-monitor", "--traffic-limit", "100", "--traffic-period", "30"), 127,
         spec={"conduit": {"data_cap": {"traffic_limit_gb": 100, "period_days": 30}}}, tool="refuse"),
    Rule("monitor-limit-at-least-100", f"{PI}2.0.0 cli/scripts/monitor/main.go:24,222-224", MONITOR,
         ("conduit-monitor", "--traffic-limit", "50", "--traffic-period", "30"), REFUSED,
         stderr="[ERROR] Configuration error: traffic-limit must be at least 100 GB",
         spec={"conduit": {"data_cap": {"traffic_limit_gb": 50, "period_days": 30}}}, tool="refuse"),
    Rule("monitor-period-at-least-7", f"{PI}2.0.0 cli/scripts/monitor/main.go:25,219-221", MONITOR,
         ("conduit-monitor", "--traffic-limit", "100", "--traffic-period", "3"), REFUSED,
         stderr="[ERROR] Configuration error: traffic-period must be at least 7 days",
         spec={"conduit": {"data_cap": {"traffic_limit_gb": 100, "period_days": 3}}}, tool="refuse"),
    Rule("monitor-threshold-60-90", f"{PI}2.0.0 cli/scripts/monitor/main.go:26-27,225-227", MONITOR,
         ("conduit-monitor", "--traffic-limit", "100", "--traffic-period", "7", "--bandwidth-threshold", "95"), REFUSED,
         stderr="[ERROR] Configuration error: bandwidth-threshold must be between 60-90%", tool="refuse"),
    Rule("monitor-without-limit-runs-conduit", f"{PI}2.0.0 cli/scripts/monitor/main.go:60-68,237-245", MONITOR,
         ("conduit-monitor", "--", "start", "--bogus"), REFUSED,
         stderr="[INFO] No traffic limit set. Running conduit directly."),
]


def rows_for(profile: str) -> list[Rule]:
    return [r for r in RULES if profile in r.profiles]
