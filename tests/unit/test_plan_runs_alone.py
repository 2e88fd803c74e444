"""A saved plan is run by the executor alone: the steps and the plan's target hold everything the
host calls need, so no spec is read (the spec loader is never imported) to carry it out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import offline_plan as plan_offline
from conduit.plan.saved import dumps, plan_data, spec_fields
from conduit.spec.load import load_text
from tests.helpers import EXAMPLE, SMALL_VPS

ROOT = Path(__file__).resolve().parents[2]

RUN_ALONE = """
import json, sys
from pathlib import Path
from conduit.execute.executor import Executor
from conduit.plan.saved import read_saved

saved = read_saved(sys.argv[1])
root = Path(sys.argv[2])
ex = Executor(saved.plan.target, root, root / "state", None)
ran = []
for step in saved.plan.changes:
    if step.phase == "sysctl":
        ex.run(step)
        ran.append(f"{step.kind} {step.id}")
loaded = sorted(m for m in sys.modules if m.startswith("conduit.spec.load"))
print(json.dumps({"ran": ran, "spec_loader": loaded, "answers": sorted(ex.sysctl_answers)}))
"""


def test_a_saved_plan_runs_with_no_spec_loaded(tmp_path):
    text = EXAMPLE.read_text()
    plan = plan_offline(load_text(text, str(EXAMPLE), SMALL_VPS))
    sysctl = [s for s in plan.changes if s.kind == "sysctl"]
    assert sysctl and plan.target is not None  # the example tunes the kernel: there is something to run
    saved = tmp_path / "plan.json"
    saved.write_text(dumps(plan_data(plan, spec_fields(str(EXAMPLE), text, False))) + "\n")
    root = tmp_path / "root"
    for step in sysctl:  # the kernel's keys, as /proc/sys shows them
        key = root / "proc/sys" / step.id.replace(".", "/")
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text("0\n")
    done = subprocess.run([sys.executable, "-c", RUN_ALONE, str(saved), str(root)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["spec_loader"] == []
    assert said["answers"] == sorted(s.id for s in sysctl)
    for step in sysctl:
        assert (root / "proc/sys" / step.id.replace(".", "/")).read_text() == step.desired["value"] + "\n"
    sysctl_file = [s for s in plan.changes if s.kind == "sysctl_file"]
    for step in sysctl_file:
        assert (root / step.id.lstrip("/")).read_text() == step.desired["content"]
