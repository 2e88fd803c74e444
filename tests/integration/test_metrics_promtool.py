"""/metrics passes `promtool check metrics`, the linter Prometheus ships for exposition text."""

from __future__ import annotations

import shutil
import subprocess

from harness import not_found, unavailable
from tests.unit.test_serve import Setup, observation
from tests.unit.test_status_render import row


def test_promtool_accepts_the_metrics_of_a_few_nodes(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable(not_found("promtool", "prometheus"))
    s = Setup(tmp_path)
    data = observation(connected=3)
    data["containers"].append(row("conduit-3", up=False, dead=True, restarts=2, lifetime_bytes_up=None))
    data["countries"].append({"region": "CN", "clients": 1, "bytes_up": 3, "bytes_down": 4})
    s.fake.data = data
    s.observer.refresh()
    answer = s.client.get("/metrics", headers=s.auth("ann"))
    assert answer.status_code == 200 and "conduit-3" in answer.text
    check = subprocess.run([promtool, "check", "metrics"], input=answer.text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr
