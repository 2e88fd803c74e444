"""The layout holds: layers import only downwards (.importlinter), and no function is too tangled to read."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_COMPLEXITY = 15
MAX_STARTUP_MODULES = 15  # conduit's own modules that `--version` and `--help` may load


def _tool(name: str) -> list[str]:
    """The console script beside this Python (a venv run without activating it), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return [found]


def test_import_contracts_hold():
    done = subprocess.run(_tool("lint-imports") + ["--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


PURE_PLANNING = ("conduit.engine.planning", "conduit.engine.settle", "conduit.engine.intent")


def test_planning_imports_no_driver():
    """The plan is made from one observation: loading the planner loads no driver, no state module,
    no Docker SDK and no subprocess (and .importlinter keeps it so, indirect imports included)."""
    probe = "import sys; import " + ", ".join(PURE_PLANNING) + "; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = done.stdout.split()
    assert "conduit.engine.planning" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("docker", "subprocess") or m.startswith(("conduit.drivers", "conduit.state"))] == []
    contract = (ROOT / ".importlinter").read_text().split("[importlinter:contract:planning]")[1].split("[importlinter")[0]
    assert all(m in contract for m in PURE_PLANNING + ("conduit.drivers", "conduit.state", "docker", "subprocess"))


def test_no_product_function_is_above_complexity_15():
    done = subprocess.run([sys.executable, "-m", "radon", "cc", "-j", "conduit"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    too_complex = []
    for path, blocks in json.loads(done.stdout).items():
        if isinstance(blocks, dict):  # radon reports a file it cannot parse as {"error": ...}
            too_complex.append(f"{path}: {blocks.get('error')}")
            continue
        for block in blocks:
            for item in [block, *block.get("methods", [])]:
                if item["complexity"] > MAX_COMPLEXITY and item["type"] in ("function", "method"):
                    name = f"{item['classname']}.{item['name']}" if item.get("classname") else item["name"]
                    too_complex.append(f"{path}:{item['lineno']} {name} ({item['complexity']})")
    assert not too_complex, "split these into smaller functions:\n" + "\n".join(sorted(set(too_complex)))


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_load_a_few_modules_and_no_heavy_library(flag):
    """The error boundary names every fault from conduit.errors, and each command loads on first
    use: a command that prints and exits loads neither the others nor Docker, pydantic or rich."""
    code = (
        "import sys\n"
        "from conduit.cli.root import main\n"
        f"try:\n    main([{flag!r}], prog_name='conduit')\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "print(' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith(("conduit, version ", "Usage: conduit")), done.stdout + done.stderr
    loaded = done.stderr.split()
    own = [name for name in loaded if name == "conduit" or name.startswith("conduit.")]
    assert len(own) < MAX_STARTUP_MODULES, f"{flag} loads {len(own)} conduit modules:\n" + "\n".join(own)
    heavy = sorted({name.partition(".")[0] for name in loaded} & {"pydantic", "docker", "requests", "rich", "fastapi", "structlog", "yaml"})
    assert not heavy, f"{flag} loads {heavy}"


def test_errors_import_only_the_standard_library():
    """conduit.errors is the lowest layer: anything may import it, and it imports nothing of conduit's nor a package."""
    tree = ast.parse((ROOT / "conduit" / "errors.py").read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "." for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    outside = [name for name in imported if name.partition(".")[0] not in sys.stdlib_module_names]
    assert imported and not outside, outside


MAX_STORE_METHODS = 15


def public_methods(path: Path) -> dict[str, int]:
    """{class name: how many public methods it defines} of one module."""
    tree = ast.parse(path.read_text(), str(path))
    return {
        node.name: sum(1 for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"))
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }


def test_no_state_class_does_everything():
    """The state is stores of one purpose each over one database, not one class that knows every table."""
    counted = {f"{path.name}:{name}": n for path in sorted((ROOT / "conduit" / "state").glob("*.py")) for name, n in public_methods(path).items()}
    assert "db.py:Database" in counted and "history.py:History" in counted  # the count looked where the stores are
    too_many = {name: n for name, n in counted.items() if n > MAX_STORE_METHODS}
    assert not too_many, f"split these into stores of one purpose each (at most {MAX_STORE_METHODS} public methods): {too_many}"


def test_every_step_kind_has_exactly_one_handler():
    """The executor is a table {Kind: handler}: a kind without one is a plan it cannot run, and no
    handler stands for a kind that does not exist."""
    from conduit.execute.executor import HANDLERS
    from conduit.plan.kinds import Kind

    assert set(HANDLERS) == set(Kind), set(Kind) ^ set(HANDLERS)
    handlers = list(HANDLERS.values())
    assert len(set(handlers)) == len(handlers), "one handler serves two kinds"


def test_one_vocabulary_the_spec_is_spec_and_the_daemon_is_docker():
    """docs/architecture.md (Words): a ClusterSpec parameter is `spec`, never `doc`; no text or class calls dockerd an engine."""
    called_doc, engine_words = [], []
    for path in sorted((ROOT / "conduit").rglob("*.py")):
        text = path.read_text()
        if "Docker engine" in text or "EngineError" in text:
            engine_words.append(str(path.relative_to(ROOT)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and "Engine" in node.name:
                engine_words.append(f"{path.relative_to(ROOT)}:{node.lineno} class {node.name}")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                called_doc += [f"{path.relative_to(ROOT)}:{node.lineno}" for a in args if a.arg == "doc"]
    assert called_doc == [] and engine_words == []


def test_plan_loads_no_docker_sdk(tmp_path):
    """`conduit plan` only reads Docker: it asks over plain HTTP (conduit.drivers.dockerapi) and
    never loads the Docker SDK, requests or urllib3 (60-100 ms and ~7 MiB). Here the daemon's socket
    is absent, so the plan goes as far as its first Docker call and stops with the one-line error."""
    spec = ROOT / "examples" / "cluster.yaml"
    host = f"unix://{tmp_path}/docker.sock"
    code = (
        "import sys\n"
        "from conduit.cli.root import main\n"
        f"try:\n    main(['--root', {str(tmp_path)!r}, '--state-dir', {str(tmp_path / 'state')!r}, '--docker-host', {host!r}, 'plan', {str(spec)!r}], prog_name='conduit')\n"
        "except SystemExit as exc:\n    print('exit', exc.code)\n"
        "print('modules:', ' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "exit 1" in done.stdout.splitlines() and f"cannot reach the Docker daemon at {host}" in done.stderr, done.stdout + done.stderr
    # the module list alone: the error line may name a package (`apt-get install docker.io`)
    loaded = next(line for line in done.stdout.splitlines() if line.startswith("modules: ")).split()[1:]
    assert {"conduit.engine.observe", "conduit.drivers.dockerapi"} <= set(loaded)
    heavy = sorted({name.partition(".")[0] for name in loaded} & {"docker", "requests", "urllib3"})
    assert not heavy, f"conduit plan loads {heavy}"


def test_waiting_takes_no_look_to_call_back():
    """A helper for waiting that is given the look calls back up the layers from the drivers: every
    waiter loops over retries with its own look (docs/architecture.md)."""
    tree = ast.parse((ROOT / "conduit" / "drivers" / "polling.py").read_text())
    takes_a_function = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                        for a in f.args.args if a.annotation is not None and "Callable" in ast.unparse(a.annotation)]
    assert takes_a_function == []


def _takes_a_function(path: Path, names: set[str] | None = None) -> list[str]:
    """The parameters of `path`'s functions and the fields of its classes (those named in `names`, or
    all) annotated as a Callable."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and (names is None or node.name in names):
            found += [f"{path.name}:{node.name}({a.arg})" for a in node.args.args + node.args.kwonlyargs
                      if a.annotation is not None and "Callable" in ast.unparse(a.annotation)]  # fmt: skip
        if isinstance(node, ast.ClassDef) and (names is None or node.name in names):
            found += [f"{path.name}:{node.name}.{ast.unparse(f.target)}" for f in node.body
                      if isinstance(f, ast.AnnAssign) and "Callable" in ast.unparse(f.annotation)]  # fmt: skip
    return found


def test_the_agent_and_its_tracker_are_handed_no_function_from_above():
    """`conduit serve` builds the agent, starts the bot and the budget with it itself, then runs it:
    conduit.serve.run is given no function of the CLI's to call (the watch loop it runs is named by
    values); and the tracker the agent hosts is handed the spec as a value, never a function that
    reads it through the agent (docs/architecture.md)."""
    run = ROOT / "conduit" / "serve" / "run.py"
    assert "def run(" in run.read_text() and "class Watching" in run.read_text()
    tracker = sorted((ROOT / "conduit" / "tracker").glob("*.py"))
    assert any(p.name == "hosted.py" for p in tracker)
    assert _takes_a_function(run, {"run", "Watching"}) + [found for path in tracker for found in _takes_a_function(path)] == []
