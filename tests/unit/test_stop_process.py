"""Stopping a process the tool started (its tracker, its nginx): SIGTERM, SIGKILL only when it
outlives the timeout. Real processes, children of the test, so their ends can be read."""

from __future__ import annotations

import signal
import subprocess
import sys

from conduit.execute.executor import stop_process


def test_a_process_that_ends_on_sigterm_is_not_killed():
    proc = subprocess.Popen(["sleep", "30"])
    stop_process(proc.pid, timeout=10)
    assert proc.wait(timeout=5) == -signal.SIGTERM


def test_a_process_that_ignores_sigterm_is_killed_at_the_timeout():
    ignores = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", ignores], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    stop_process(proc.pid, timeout=0.3)
    assert proc.wait(timeout=5) == -signal.SIGKILL
    proc.stdout.close()
