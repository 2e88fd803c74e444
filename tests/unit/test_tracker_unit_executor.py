"""Where systemd is PID 1 the tracker is a unit. systemd cannot run as PID 1 here, so a
stand-in systemctl on PATH records what the executor asks of it."""

import os
import stat

import pytest

from conduit.engine.targets import executable
from conduit.execute.executor import Executor
from conduit.spec.load import load_text
from conduit.plan.planner import Plan, Step
from conduit.plan.target import Runtime
from conduit.render.tracker import render_tracker
from tests.helpers import EXAMPLE, SMALL_VPS


@pytest.fixture
def systemctl(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    script = bin_dir / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return lambda: calls.read_text().splitlines() if calls.exists() else []


def test_tracker_becomes_a_unit_and_goes_away_again(tmp_path, systemctl):
    """Planned for a host whose PID 1 is systemd, the tracker step carries its unit; the executor writes it."""
    doc = load_text(EXAMPLE.read_text(), "c.yaml", SMALL_VPS)
    (tracker,) = render_tracker(doc)
    create = Step("tracker", "tracker", "tracker", "create", "not on the host", [], tracker.props)
    runtime = Runtime(systemd=True, conduit_bin="/opt/bin/conduit", state_dir=str((tmp_path / "state").resolve()))
    plan = executable(Plan(doc.metadata.name, [create], "fp"), doc, runtime)
    assert plan.target.systemd and "ExecStart=/opt/bin/conduit tracker run" in plan.steps[0].desired["unit"]
    ex = Executor(plan.target, tmp_path / "root", tmp_path / "state", None)
    ex.run(plan.steps[0])
    unit = tmp_path / "root/etc/systemd/system/conduit-tracker-edge-1.service"
    text = unit.read_text()
    assert f"Environment=CONDUIT_STATE_DIR={(tmp_path / 'state').resolve()}" in text
    assert "tracker run --cluster edge-1" in text and "CPUQuota=10%" in text
    assert systemctl() == ["daemon-reload", "enable conduit-tracker-edge-1", "restart conduit-tracker-edge-1"]

    ex.run(Step("tracker", "tracker", "tracker", "delete", "no longer in the spec", [], None))
    assert not unit.exists()
    assert systemctl()[-2:] == ["disable --now conduit-tracker-edge-1", "daemon-reload"]
