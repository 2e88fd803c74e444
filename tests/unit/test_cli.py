import json
import subprocess
import sys

import click
import yaml

import pytest
from click.testing import CliRunner

from conduit.cli.root import COMMANDS, main
from conduit.spec.jsonschema import COMMITTED, schema_text
from tests.helpers import CONDUIT, EXAMPLE, cli_env


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, **kwargs):
        return runner.invoke(main, list(args), catch_exceptions=False, **kwargs)

    return invoke


def test_committed_schema_matches_the_models():
    assert COMMITTED.read_text() == schema_text(), "run: conduit schema > conduit/spec/cluster.schema.json"


def test_example_points_editors_at_the_schema():
    first = EXAMPLE.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../conduit/spec/cluster.schema.json"
    assert (EXAMPLE.parent / "../conduit/spec/cluster.schema.json").resolve() == COMMITTED


def test_validate_example(run):
    result = run("validate", str(EXAMPLE))
    assert result.exit_code == 0 and "valid" in result.output


def test_validate_names_the_checks_it_did_not_run(run):
    lines = run("validate", str(EXAMPLE)).output.splitlines()
    assert lines[1] == (
        "not checked: the Docker daemon, nginx and its stream module, ports in use, /proc/sys, "
        f"the tracker (`conduit plan {EXAMPLE}` checks them)"
    )
    node = EXAMPLE.with_name("node.yaml")
    assert "nginx" not in run("validate", str(node)).output.splitlines()[1]


def test_validate_bad_field_exits_2_with_one_line(run, tmp_path):
    bad = tmp_path / "cluster.yaml"
    bad.write_text(EXAMPLE.read_text().replace("count: 8", "count: 0"))
    result = run("validate", str(bad))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"{bad}:29:5: spec.containers.count: must be >= 1"
    assert "Traceback" not in result.output


def test_schema_command_prints_json(run):
    result = run("schema")
    assert json.loads(result.output)["title"] == "Conduit cluster spec"
    assert run("schema", "--check").exit_code == 0


def test_init_writes_a_valid_spec(run, tmp_path):
    target = tmp_path / "cluster.yaml"
    assert run("init", "-o", str(target)).exit_code == 0
    text = target.read_text()
    assert "mode: host" in text and "enabled: false" in text
    assert run("validate", str(target)).exit_code == 0
    assert run("init", "-o", str(target)).exit_code == 1  # no silent overwrite


def test_every_command_has_help(run):
    from conduit.cli.root import main as group

    def walk(command, path):
        yield path
        if isinstance(command, click.Group):  # the root group loads its commands by name
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), path + [name])

    paths = list(walk(group, []))
    assert len(paths) > 8
    for path in paths:
        result = run(*path, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output, path


def test_help_lists_each_command_by_its_own_first_sentence(run):
    """The root lists the commands without loading them; each summary it holds is the command's own."""
    ctx = click.Context(main)
    for name, (_, summary) in COMMANDS.items():
        assert main.get_command(ctx, name).get_short_help_str(1000) == summary, name
    listed = run("--help").output.split("Commands:\n")[1].splitlines()
    assert [line.split()[0] for line in listed] == sorted(COMMANDS)


def test_a_command_loads_only_its_own_modules():
    """The agent runs for months: it holds neither the other commands' modules nor numpy, nor rich
    (its plans are plain text; structlog loads without it, and without colorama), nor pydantic.v1
    once its routes are built. It is also the host's watcher and tracker (serve --watch), so
    watch's options and the tracker are its own."""
    code = (
        "import sys; from conduit.cli.root import main; main.get_command(None, 'serve');"
        "import conduit.serve.run, conduit.serve.app, types; conduit.serve.app.routes(types.SimpleNamespace(fleet=None));"
        "print(' '.join(sorted(k for k, v in sys.modules.items() if v is not None)))"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, check=True).stdout.split())
    assert "conduit.cli.serve" in loaded
    assert not loaded & {"numpy", "deepdiff", "qrcode", "rich", "pygments", "colorama", "pydantic.v1", "conduit.cli.keys", "conduit.cli.plan", "conduit.cli.status", "conduit.cli.fleet",
                         "conduit.views.report", "conduit.views.status_table"}


def test_version(run):
    assert run("--version").output.startswith("conduit, version ")


def test_offline_plan_of_the_example(run):
    result = run("plan", "--offline", str(EXAMPLE))
    assert result.exit_code == 0
    # 11 sysctl keys and file, 3 nginx, a network, 8 volumes, 8 containers, the tracker;
    # an empty host has no image either
    assert "Plan: 32 to add, 0 to change, 0 to destroy, 1 image to pull." in result.output
    assert "  v pull image ghcr.io/psiphon-inc/conduit/cli:" in result.output
    assert run("plan", "--offline", "--detailed-exitcode", str(EXAMPLE)).exit_code == 2


def test_where_exit_2_means_changes_an_invalid_spec_exits_1(run, tmp_path):
    """A CI job that reads 2 as "changes to apply" must not read a broken spec so: it is an error, 1."""
    bad = tmp_path / "cluster.yaml"
    bad.write_text(EXAMPLE.read_text().replace("count: 8", "count: 0"))
    line = f"{bad}:29:5: spec.containers.count: must be >= 1"
    for args in (["plan", "--offline", "--detailed-exitcode", str(bad)], ["diff", "--detailed-exitcode", str(EXAMPLE), str(bad)],
                 ["diff", "--detailed-exitcode", str(bad), str(EXAMPLE)], ["update", "--check", str(bad)]):
        result = run(*args)
        assert (result.exit_code, result.stderr.strip()) == (1, line), args
    assert run("plan", "--detailed-exitcode", str(tmp_path / "missing.yaml")).exit_code == 1
    assert run("diff", "--detailed-exitcode", str(tmp_path / "missing.yaml"), str(EXAMPLE)).exit_code == 1
    assert run("plan", "--offline", str(bad)).exit_code == 2  # without the flag, bad input is 2 as everywhere


def test_an_offline_plan_says_so_first_and_last(run):
    lines = run("plan", "--offline", str(EXAMPLE)).output.strip().splitlines()
    assert lines[0] == "Offline plan: against an empty host; Docker, nginx, /proc/sys and the tracker were not read."
    assert lines[-1] == "Plan: 32 to add, 0 to change, 0 to destroy, 1 image to pull. (offline: this host was not read)"


def test_offline_plan_json_and_saved(run, tmp_path):
    out = tmp_path / "plan.json"
    result = run("plan", "--offline", "--json", "--out", str(out), str(EXAMPLE))
    data = json.loads(result.output)
    assert data == json.loads(out.read_text())
    assert data["summary"]["add"] == sum(s["action"] == "create" for s in data["steps"]) == 32 and data["fingerprint"]
    assert [s["id"] for s in data["steps"] if s["action"] == "pull"] == [yaml.safe_load(EXAMPLE.read_text())["spec"]["containers"]["image"]]


def test_diff_between_two_specs(run, tmp_path):
    new = tmp_path / "new.yaml"
    new.write_text(EXAMPLE.read_text().replace("max_clients: 250", "max_clients: 300"))
    result = run("diff", str(EXAMPLE), str(new))
    assert result.exit_code == 0
    # the example's front and rollout.max_unavailable 1: eight batches, each drained first;
    # the own nginx is resized for the larger capacity
    assert "Plan: 8 to add, 1 to change, 8 to destroy; nodes replaced in 8 batches." in result.output
    assert "nginx_main /etc/nginx/conduit/nginx.conf" in result.output
    # the eight nodes take the same change: one line, with how they are rolled out
    assert "-/+ container conduit-1..8  (differs from the spec; forces replacement)" in result.output
    assert "      replaced 1 at a time (batches 1..8); each batch leaves nginx 5s before it stops" in result.output
    assert result.output.count("~ command: -m 250 -> -m 300") == 1


def test_diff_verbose_shows_every_step_and_whole_values(run, tmp_path):
    new = tmp_path / "new.yaml"
    new.write_text(EXAMPLE.read_text().replace("max_clients: 250", "max_clients: 300"))
    result = run("diff", "--verbose", str(EXAMPLE), str(new))
    assert result.exit_code == 0
    assert result.output.count("-/+ container conduit-") == 8 and "..." not in result.output
    lines = [line.split("  (")[0] for line in result.output.splitlines() if not line.startswith("      ")]
    first = lines.index(" || drain backends conduit-1")
    assert lines[first + 1 : first + 3] == ["-/+ container conduit-1", " |> restore backends conduit-1"]
    assert "~ command: start -m 250 -b 3 -d /home/conduit/data --metrics-addr 0.0.0.0:9090 -> start -m 300" in result.output
    assert "          -worker_rlimit_nofile" in result.output  # a file's change is its diff
    assert "volume conduit-data-1  (up to date)" in result.output


def test_diff_against_a_git_ref(run, tmp_path):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    spec = repo / "cluster.yaml"
    spec.write_text(EXAMPLE.read_text())
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "cluster.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "spec"], check=True)
    spec.write_text(EXAMPLE.read_text().replace("count: 8", "count: 7").replace("      8:  ", "      7:  "))
    result = run("diff", "--git-ref", "HEAD", str(spec))
    assert "- container conduit-8" in result.output
    assert run("diff", "--git-ref", "nope", str(spec)).exit_code == 1


def test_apply_of_a_corrupt_saved_plan_is_bad_input(run, tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text("not json")
    result = run("--state-dir", str(tmp_path / "state"), "apply", "--plan", str(bad))
    assert result.exit_code == 2 and "not a saved plan" in result.stderr
    assert not (tmp_path / "state").exists()


def test_spec_reference_page_matches_the_models(run):
    from conduit.spec.reference import PAGE

    assert PAGE.read_text() == run("schema", "--markdown").output, "run: conduit schema --markdown > docs/spec-reference.md"
    assert "| `spec.containers.resources.ulimit_nofile` |" in PAGE.read_text()


def test_first_week_init_then_edit_count_validate_and_plan(tmp_path):
    """As a new user does it: init, give the host's size, change count, validate and plan offline."""
    import re

    spec = tmp_path / "x.yaml"

    def conduit(*args):
        return subprocess.run([*CONDUIT, *args], env=cli_env(), capture_output=True, text=True, cwd=tmp_path, timeout=120)

    def edit(count: int, max_clients: int | None = None):
        text = re.sub(r"\n    count: \d+\n", f"\n    count: {count}\n", spec.read_text())
        if max_clients is not None:
            text = re.sub(r"\n    # max_clients: \d+\n", f"\n    max_clients: {max_clients}\n", text)
        spec.write_text(text)

    assert conduit("init", "-o", "x.yaml").returncode == 0
    # this machine's size written down, so that every machine running the test sees the same numbers
    spec.write_text(spec.read_text().replace("vcpus: auto", "vcpus: 2").replace("memory: auto", "memory: 4GiB", 1))
    edit(4)
    checked = conduit("validate", "x.yaml")
    assert (checked.returncode, checked.stderr) == (0, "")
    assert "capacity: 4 nodes x 109 clients = 436 clients, each node 0.45 CPU and 896 MiB" in checked.stdout
    planned = conduit("plan", "--offline", "x.yaml")
    assert planned.returncode == 0 and "warning:" not in planned.stdout
    assert "capacity: this host has 1.8 CPUs and 3.5 GiB after its reserve: 262-612 clients" in planned.stdout
    assert "memory: 896 MiB" in planned.stdout  # the even share, in the container's settings (the plan shows sizes in binary units)
    as_json = json.loads(conduit("plan", "--offline", "--json", "x.yaml").stdout)
    assert as_json["notes"] == checked.stdout.splitlines()[2:] and as_json["warnings"] == []

    edit(40, max_clients=250)
    checked = conduit("validate", "x.yaml")
    assert checked.returncode == 0
    assert checked.stderr.splitlines()[0] == (
        "warning: x.yaml:44:5: spec.conduit.max_clients: 250 clients on 0.045 CPU (the default even share) per node is "
        "5556 clients per CPU, past Psiphon's guidance of 150-350; lower count to 2 or max_clients to 15"
    )
    assert checked.stderr.splitlines()[0] in conduit("plan", "--offline", "x.yaml").stdout

    edit(60)
    refused = conduit("validate", "x.yaml")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == (
        "x.yaml:22:5: spec.containers.count: 60 nodes would get 59 MiB each (the default even share of the 3.5 GiB left "
        "after the reserve), below the 64 MiB a node needs (a Conduit process needs that to start); lower count to 56\n"
    )
    assert conduit("plan", "--offline", "x.yaml").returncode == 2


def test_rollback_on_a_state_of_two_clusters_needs_the_cluster_and_keeps_to_it(run, tmp_path):
    from conduit.state.stores import open_state

    history = open_state(tmp_path).history
    for name in ("edge", "core"):
        history.finish(history.begin("spec\n", "h", None, (None, None), name), "succeeded")
    state = ["--state-dir", str(tmp_path)]
    unnamed = run(*state, "rollback")
    assert unnamed.exit_code == 2 and unnamed.output == "error: the state directory holds clusters core, edge; give --cluster NAME\n"
    other = run(*state, "rollback", "2", "--cluster", "edge")
    assert other.exit_code == 2 and other.output.startswith("error: generation 2 is of cluster core, not edge;")
    unknown = run(*state, "rollback", "--cluster", "west")
    assert unknown.exit_code == 2 and unknown.output.startswith("error: no generation of cluster west;")
    alone = run(*state, "rollback", "--cluster", "edge")  # edge has no earlier good generation: core's is not its
    assert alone.exit_code == 1 and "no good generation before the current one" in alone.output
    assert len(alone.output.splitlines()) == 1


def test_rollback_goes_only_to_a_generation_that_succeeded(run, tmp_path):
    """A rolled-back, failed or destroyed generation's spec never ran whole on the host: re-applying it is no way back."""
    from conduit.state.stores import open_state

    history = open_state(tmp_path).history
    for outcome in ("succeeded", "rolled_back", "destroyed", "failed"):
        history.finish(history.begin("spec\n", "h", None, (None, None), "edge"), outcome)
    for gen, said in ((2, "rolled back"), (3, "destroyed"), (4, "failed")):
        refused = run("--state-dir", str(tmp_path), "rollback", str(gen), "--auto-approve")
        assert (refused.exit_code, refused.output) == (
            2, f"error: generation {gen} {said}: roll back to one that succeeded (`conduit history` lists them)\n")


def test_history_prints_a_generations_spec_and_says_when_it_has_none(run, tmp_path):
    from conduit.state.stores import open_state

    history = open_state(tmp_path).history
    history.finish(history.begin("kind: ConduitCluster\n", "h", None, (None, None), "edge"), "succeeded")
    history.finish(history.begin("# destroy of edge\n", "destroy", None, (None, None), "edge"), "destroyed")  # what destroy records
    assert run("--state-dir", str(tmp_path), "history", "--spec", "1").output == "kind: ConduitCluster\n"
    none = run("--state-dir", str(tmp_path), "history", "--spec", "2")
    assert (none.exit_code, none.output) == (2, "error: generation 2 (destroyed) records no spec; `conduit history` lists the others\n")

