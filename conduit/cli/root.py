"""The `conduit` command line."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click

from conduit.drivers import hostfacts
from conduit.views import logs
from conduit.spec.load import SpecError, load_file, load_text
from conduit.spec.spec import ClusterSpec

EXIT_INVALID = 2


def _version() -> str:
    try:
        return version("conduit-reconciler")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Options:
    """Global options every command shares, so a test or a second cluster can point anywhere."""

    state_dir: Path
    root: Path
    docker_host: str | None
    log_format: str

    def detected(self):
        # Hardware is the machine's own, whatever --root says the managed files live under.
        return hostfacts.detect("/")

    def host(self):
        from conduit.drivers.observe import HostAccess

        return HostAccess(root=self.root, state_dir=self.state_dir, docker_host=self.docker_host)


def fail(message: str, code: int = 1) -> None:
    """One line, no traceback."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def invalid(lines: list[str]) -> None:
    """Print a spec's problems, one line each, and stop with exit code 2."""
    for line in lines:
        click.echo(line, err=True)
    sys.exit(EXIT_INVALID)


def load_spec(opts: Options, path: str) -> ClusterSpec:
    try:
        return load_file(path, opts.detected())
    except SpecError as exc:
        invalid(exc.lines())
        raise AssertionError("unreachable")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(_version(), "--version", prog_name="conduit")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/var/lib/conduit",
    show_default=True,
    envvar="CONDUIT_STATE_DIR",
    help="Where generations, the journal and the lock live.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default="/",
    show_default=True,
    envvar="CONDUIT_ROOT",
    help="Host filesystem root for the files the tool manages and for /proc/sys.",
)
@click.option(
    "--docker-host",
    envvar="DOCKER_HOST",
    default=None,
    help="Docker engine endpoint (default: DOCKER_HOST, else the local socket).",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    help="Format of the structured events written to stderr.",
)
@click.pass_context
def main(ctx: click.Context, state_dir: Path, root: Path, docker_host: str | None, log_format: str) -> None:
    """Make a host running Psiphon Conduit nodes match one cluster.yaml."""
    # People read the step lines on stdout; every event is still there with --log-format json.
    logs.configure(log_format, "info" if log_format == "json" else "warning")
    ctx.obj = Options(state_dir=state_dir, root=root, docker_host=docker_host, log_format=log_format)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def validate(opts: Options, file: str) -> None:
    """Check FILE against the spec language and this host; exit 2 when it is invalid."""
    spec = load_spec(opts, file)
    count = spec.spec.containers.count
    click.echo(f"{file}: valid ({spec.metadata.name}: {count} container{'s' if count != 1 else ''})")
    click.echo(f"not checked: {', '.join(host_checks(spec))} (`conduit plan {file}` checks them)")


def host_checks(spec: ClusterSpec) -> list[str]:
    """What only `plan` checks, because it reads the host beyond its hardware."""
    s = spec.spec
    checks = ["the Docker engine"]
    if s.loadbalancer.enabled:
        checks.append("nginx and its stream module")
    checks.append("ports in use")
    if s.sysctl.profile != "none":
        checks.append("/proc/sys")
    if s.tracker.enabled:
        checks.append("the tracker")
    return checks


@main.command()
@click.option("--check", is_flag=True, help="Exit 1 when the committed schema differs from the models.")
@click.option("--markdown", is_flag=True, help="Print the spec reference page instead (docs/spec-reference.md).")
def schema(check: bool, markdown: bool) -> None:
    """Print the JSON Schema of the spec."""
    from conduit.spec.jsonschema import COMMITTED, schema_text

    if markdown:
        from conduit.spec.reference import reference_markdown

        click.echo(reference_markdown(), nl=False)
        return
    text = schema_text()
    if check:
        if not COMMITTED.exists() or COMMITTED.read_text() != text:
            click.echo(f"{COMMITTED} is out of date: run `conduit schema > {COMMITTED}`", err=True)
            sys.exit(1)
        click.echo(f"{COMMITTED} is up to date")
        return
    click.echo(text, nl=False)


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.pass_obj
def init(opts: Options, output: str | None, force: bool) -> None:
    """Detect this machine's hardware and write a commented spec with recommended values."""
    from conduit.render.init_spec import render_init

    text = render_init(opts.detected())
    if output is None:
        click.echo(text, nl=False)
        return
    target = Path(output)
    if target.exists() and not force:
        click.echo(f"error: {output} exists; use --force to overwrite it", err=True)
        sys.exit(1)
    target.write_text(text)
    click.echo(f"wrote {output}")


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(conduit completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    click.echo(cls(main, {}, "conduit", "_CONDUIT_COMPLETE").source())


def print_plan(plan, verbose: bool = False, offline: bool = False) -> None:
    """The plan on stdout; the problems that stop it last, on stderr."""
    from rich.console import Console

    from conduit.views.report import render_plan, render_problems

    Console(highlight=False, soft_wrap=True).print(render_plan(plan, verbose, offline))
    if plan.problems:
        click.echo(render_problems(plan), err=True)


def _show(plan, as_json: bool, out: str | None, verbose: bool, extra: dict | None = None) -> None:
    import json

    data = {**plan.to_json(), **(extra or {})}
    if out:
        Path(out).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        print_plan(plan, verbose, bool(data.get("offline")))
        if out and not plan.problems:
            click.echo(f"\nSaved the plan to {out}; apply exactly it with: conduit apply --plan {out}")


def _exit_for(plan, detailed: bool) -> None:
    if plan.problems:
        sys.exit(1)
    if detailed and plan.changes:
        sys.exit(2)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="Plan against an empty host: no Docker, nginx or /proc/sys needed.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--out", type=click.Path(dir_okay=False), help="Save the plan, with a fingerprint of the observed host.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing changes, 2 when something does, 1 on error.")
@click.option("-v", "--verbose", is_flag=True, help="Show resources that need no change too.")
@click.pass_obj
def plan(opts: Options, file: str, offline: bool, as_json: bool, out: str | None, detailed_exitcode: bool, verbose: bool) -> None:
    """Show what `apply` would change on this host to make it match FILE. Changes nothing."""
    import hashlib

    from conduit.drivers.docker import EngineError
    from conduit.engine.planning import plan_against_host, plan_offline

    spec = load_spec(opts, file)
    try:
        result = plan_offline(spec) if offline else plan_against_host(spec, opts.host())
    except EngineError as exc:
        fail(str(exc))
    text = Path(file).read_text()
    extra = {
        "spec_file": str(Path(file).resolve()),
        "spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "spec_text": text,
        "offline": offline,
    }
    if not offline:
        result.warnings += interrupted_warnings(opts)
    _show(result, as_json, out, verbose, extra)
    _exit_for(result, detailed_exitcode)


def _git_show(ref: str, file: str) -> str:
    import subprocess

    from conduit.drivers.programs import not_installed

    path = Path(file).resolve()
    try:
        top = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
        rel = path.relative_to(top)
        return subprocess.run(
            ["git", "-C", top, "show", f"{ref}:{rel.as_posix()}"], capture_output=True, text=True, check=True
        ).stdout
    except FileNotFoundError:
        fail(not_installed("git"))
    except subprocess.CalledProcessError as exc:
        fail(f"git could not show {ref}:{file}: {(exc.stderr or '').strip().splitlines()[-1:] or ['failed']}")
    raise AssertionError("unreachable")


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--git-ref", help="Compare FILE with its committed version at this ref (for example origin/main).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when nothing changes, 2 when something does.")
@click.pass_obj
def diff(opts: Options, files: tuple[str, ...], git_ref: str | None, as_json: bool, detailed_exitcode: bool) -> None:
    """Print the plan between two specs: OLD NEW, or --git-ref REF FILE. Reads no host."""
    from conduit.engine.planning import plan_between

    facts = opts.detected()
    if git_ref:
        if len(files) != 1:
            fail("with --git-ref give one FILE", 2)
        old_name, new_name = f"{git_ref}:{files[0]}", files[0]
        old_text = _git_show(git_ref, files[0])
    else:
        if len(files) != 2:
            fail("give OLD and NEW, or --git-ref REF FILE", 2)
        old_name, new_name = files
        try:
            old_text = Path(old_name).read_text()
        except OSError as exc:
            fail(f"{old_name}: cannot read: {exc.strerror}", 2)
    try:
        old = load_text(old_text, old_name, facts)
    except SpecError as exc:
        invalid(exc.lines())
    new = load_spec(opts, new_name)
    result = plan_between(old, new)
    _show(result, as_json, None, False)
    _exit_for(result, detailed_exitcode)


# ------------------------------------------------------------------ apply, history, rollback


def interrupted_warnings(opts: Options) -> list[str]:
    from conduit.state.store import State

    if not (opts.state_dir / "state.db").exists():
        return []
    state = State(opts.state_dir)
    out = []
    for gen in state.interrupted():
        steps = state.journal(gen.id)
        last = f" after {steps[-1][3]} {steps[-1][1]} {steps[-1][2]} ({steps[-1][4]})" if steps else ""
        out.append(f"generation {gen.id} was interrupted{last}; the next apply converges from here")
    return out


def _confirm(auto_approve: bool, question: str) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        fail("refusing to change the host without confirmation: pass --auto-approve")
    if not click.confirm(question, default=False):
        fail("cancelled; nothing was changed")


def _run_apply(opts: Options, spec: ClusterSpec, spec_text: str, spec_path: str | None, auto_approve: bool, no_wait: bool, saved: dict | None = None) -> None:
    from conduit.features.alerts import notify
    from conduit.engine.apply import apply
    from conduit.drivers.docker import EngineError
    from conduit.state.lock import Locked, apply_lock
    from conduit.engine.planning import observed_plan
    from conduit.state.store import State

    host = opts.host()
    try:
        with apply_lock(opts.state_dir, f"conduit apply {spec_path or ''}".strip(), wait=not no_wait, on_wait=lambda m: click.echo(m, err=True)):
            plan, before = observed_plan(spec, host)
            if saved is not None and saved.get("fingerprint") != plan.fingerprint:
                fail("the host changed since this plan was saved; make a new plan")
            plan.warnings += interrupted_warnings(opts)
            # Holding the lock, this run is the one that converges from an interrupted apply.
            State(opts.state_dir).mark_interrupted()
            print_plan(plan)
            if plan.problems:
                fail("the plan has errors; nothing was changed")
            if not plan.changes:
                sys.exit(0)
            _confirm(auto_approve or saved is not None, "Apply these changes?")
            outcome = apply(spec, spec_text, spec_path, host, opts.detected(), plan, before, click.echo)
    except Locked as exc:
        fail(str(exc))
    except EngineError as exc:
        fail(str(exc))
    for warning in outcome.warnings:
        click.echo(f"warning: {warning}", err=True)
    if outcome.status == "succeeded":
        click.echo(f"Applied generation {outcome.generation}: the host matches the spec.")
    elif outcome.status == "rolled_back":
        click.echo(f"\nGeneration {outcome.generation} FAILED: {outcome.failure}", err=True)
        click.echo(f"Rolled back to {outcome.restored}. Data volumes and node keys were not touched.", err=True)
        notify(spec, f"apply of generation {outcome.generation} failed: {outcome.failure}. Rolled back to {outcome.restored}.")
    elif outcome.status == "failed":
        click.echo(f"error: {outcome.failure}", err=True)
        notify(spec, f"apply failed: {outcome.failure}")
    sys.exit(outcome.exit_code)


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, exists=True), help="Apply a plan saved by `conduit plan --out`; refused if the host moved since.")
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-wait", is_flag=True, help="Fail at once when another apply is running instead of waiting.")
@click.pass_obj
def apply(opts: Options, file: str | None, plan_file: str | None, auto_approve: bool, no_wait: bool) -> None:
    """Make the host match FILE, phase by phase, with health gates and automatic rollback.

    Exit codes: 0 applied (or nothing to do), 1 error before any change, 3 failed and rolled back.
    """
    import json

    saved = None
    if plan_file:
        try:
            saved = json.loads(Path(plan_file).read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            fail(f"{plan_file}: not a saved plan ({exc})", 2)
        if not isinstance(saved, dict) or "spec_text" not in saved or saved.get("offline"):
            fail(f"{plan_file} is not a saved plan of this host (plan --out without --offline)")
        text, path = saved["spec_text"], saved.get("spec_file")
        try:
            spec = load_text(text, path or plan_file, opts.detected())
        except SpecError as exc:
            invalid(exc.lines())
    elif file:
        spec = load_spec(opts, file)
        text, path = Path(file).read_text(), file
    else:
        fail("give a FILE or --plan", 2)
    _run_apply(opts, spec, text, path, auto_approve, no_wait, saved)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def history(opts: Options, as_json: bool) -> None:
    """List the generations applied to this host."""
    import json
    import time

    from rich.console import Console
    from rich.table import Table

    from conduit.state.store import State

    gens = State(opts.state_dir).generations() if (opts.state_dir / "state.db").exists() else []
    if as_json:
        click.echo(json.dumps([{k: v for k, v in g.__dict__.items() if k != "spec_text"} for g in gens], indent=2))
        return
    if not gens:
        click.echo("No generations yet.")
        return
    table = Table("gen", "started", "outcome", "spec", "git", "reason")
    for g in gens:
        git = (g.git_commit or "")[:10] + ("+dirty" if g.git_dirty else "")
        table.add_row(str(g.id), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(g.started)), g.outcome, g.spec_hash[:12], git, g.reason or "")
    Console().print(table)


@main.command()
@click.argument("generation", required=False, type=int)
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--no-wait", is_flag=True, help="Fail at once when another apply is running.")
@click.pass_obj
def rollback(opts: Options, generation: int | None, auto_approve: bool, no_wait: bool) -> None:
    """Re-apply generation N (default: the last good one)."""
    from conduit.state.store import State

    state = State(opts.state_dir)
    target = state.generation(generation) if generation else state.last_good()
    if target is None:
        fail(f"no generation {generation}" if generation else "no good generation to roll back to")
    try:
        spec = load_text(target.spec_text, f"generation {target.id}", opts.detected())
    except SpecError as exc:
        invalid(exc.lines())
    click.echo(f"Rolling back to generation {target.id} ({target.outcome}, spec {target.spec_hash[:12]})")
    _run_apply(opts, spec, target.spec_text, target.spec_path, auto_approve, no_wait)


@main.group()
def tracker() -> None:
    """The per-country traffic tracker."""


def _port_list(text: str) -> list[int]:
    ports: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        ports.extend(range(int(low), int(high or low) + 1))
    return ports


@tracker.command("run")
@click.option("--cluster", required=True)
@click.option("--metrics-ports", default="", help="Nodes' metrics ports on 127.0.0.1: 9090-9097 or 9090,9091.")
@click.option("--interface", default="auto")
@click.option("--source", type=click.Choice(["auto", "metrics", "capture"]), default="auto")
@click.option("--filter", "capture_filter", default="udp")
@click.option("--sample-seconds", type=int, default=10)
@click.option("--interval-seconds", type=float, default=300)
@click.option("--snaplen", type=int, default=96)
@click.option("--retention-days", type=int, default=30)
@click.option("--keep-addresses-hours", type=int, default=0)
@click.option("--no-geoip", is_flag=True)
@click.pass_obj
def tracker_run(
    opts: Options, cluster: str, metrics_ports: str, interface: str, source: str, capture_filter: str,
    sample_seconds: int, interval_seconds: float, snaplen: int, retention_days: int, keep_addresses_hours: int, no_geoip: bool,
) -> None:  # fmt: skip
    """Sample the cluster's per-country clients and traffic until stopped (run by apply)."""
    from conduit.tracker.process import run

    if interface == "auto":
        interface = hostfacts.primary_interface(Path("/")) or "eth0"
    run(
        opts.state_dir, _port_list(metrics_ports), interval_seconds, retention_days, source, interface,
        capture_filter, sample_seconds, snaplen, keep_addresses_hours, not no_geoip,
    )  # fmt: skip


from conduit.cli.watch import watch_command  # noqa: E402

main.add_command(watch_command)

from conduit.cli.status import status_command  # noqa: E402

main.add_command(status_command)

from conduit.cli.keys import claim_command, destroy_command, import_v1_command, keys_group  # noqa: E402

for _command in (import_v1_command, keys_group, claim_command, destroy_command):
    main.add_command(_command)

from conduit.cli.alerts import alerts_group  # noqa: E402

main.add_command(alerts_group)
