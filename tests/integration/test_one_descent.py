"""A spec value goes down the layers once: from the `apply` command through the request, the plan and
the executor to the host, no conduit module is called again from below while it waits (no callback
up into the CLI, no lambda handed down). tests/descent.py records every such call."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import free_port_block
from harness import wait_for
from tests.helpers import cli_env
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def traced(cluster: Cluster, out: Path, *args: str) -> dict:
    argv = [sys.executable, "-m", "tests.descent", str(out), "--", *cluster.argv(*args)[3:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO, stdin=subprocess.DEVNULL, env=cli_env())
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_apply_replace_and_rollback_each_go_down_once(tmp_path, docker_engine, standin_image, docker_cleanup):
    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("dn"), free_port_block(12))
    cluster.write()
    created = traced(cluster, tmp_path / "create.json", "apply", "--auto-approve", str(cluster.spec))
    assert created == {"exit": 0, "reentries": {}}
    assert set(cluster.names().values()) == {"running"}
    cluster.write(max_clients=60)  # a replace of every node: key backups, drains, gates
    replaced = traced(cluster, tmp_path / "replace.json", "apply", "--auto-approve", str(cluster.spec))
    assert replaced == {"exit": 0, "reentries": {}}
    back = traced(cluster, tmp_path / "rollback.json", "rollback", "--auto-approve")
    assert back == {"exit": 0, "reentries": {}}
    assert cluster.command_of(f"{cluster.prefix}-1")[2] == "40"


def test_serve_calls_the_cli_again_only_in_its_sigterm_handler(tmp_path, docker_engine, standin_image, docker_cleanup):
    """`conduit serve` builds the agent, starts the bot and the budget beside it and then runs it, each
    from the CLI: while it serves, nothing below calls into the CLI but the SIGTERM handler that ends it."""
    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("ds"), free_port_block(12))
    cluster.write()
    out, port = tmp_path / "serve.json", free_port_block(1)
    argv = [sys.executable, "-m", "tests.descent", str(out), "--", *cluster.argv("serve", str(cluster.spec), "--port", str(port))[3:]]
    agent = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=REPO, env=cli_env())
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, timeout=60, message="the agent listening")
    finally:
        agent.send_signal(signal.SIGTERM)
        stdout, stderr = agent.communicate(timeout=60)
    assert agent.returncode == 0 and stdout.endswith("agent stopped\n"), stdout + stderr
    assert json.loads(out.read_text()) == {"exit": 0, "reentries": {"conduit.cli > conduit.serve > conduit.cli": 1}}
