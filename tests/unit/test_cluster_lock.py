"""One apply per cluster on the host, whatever state directory each one names."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conduit.engine.reconcile import Request, reconcile
from conduit.engine.planning import Observed
from conduit.plan.planner import Plan
from conduit.errors import Locked
from conduit.state.lock import LOCK_DIR_ENV, apply_lock, cluster_lock_dir
from conduit.state.db import StateError


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    folder = tmp_path / "run-conduit"
    monkeypatch.setenv(LOCK_DIR_ENV, str(folder))
    return folder


def test_the_lock_lives_in_run_conduit_or_under_a_private_root(tmp_path, monkeypatch):
    monkeypatch.delenv(LOCK_DIR_ENV, raising=False)
    assert cluster_lock_dir("/") == Path("/run/conduit")
    assert cluster_lock_dir(tmp_path) == tmp_path / "run" / "conduit"
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    assert cluster_lock_dir("/") == tmp_path / "locks"
    assert cluster_lock_dir(tmp_path / "root") == tmp_path / "root" / "run" / "conduit"  # a private root stays private


def test_the_lock_directory_is_private_and_names_the_holder(tmp_path, lock_dir):
    with apply_lock(tmp_path / "a", "conduit apply a.yaml", cluster="edge-1"):
        assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((lock_dir / "edge-1.lock").stat().st_mode) == 0o600
        assert f'"pid": {os.getpid()}' in (lock_dir / "edge-1.lock").read_text()
        assert (tmp_path / "a" / "apply.lock").exists()


def test_the_same_cluster_with_another_state_directory_is_refused_without_wait(tmp_path, lock_dir):
    with apply_lock(tmp_path / "a", "conduit apply a.yaml", cluster="edge-1"):
        with pytest.raises(Locked) as caught:
            with apply_lock(tmp_path / "b", "conduit apply b.yaml", wait=False, cluster="edge-1"):
                pass
    message = str(caught.value)
    assert message.startswith(f"another apply is running: pid {os.getpid()} (conduit apply a.yaml, since ")
    assert message.endswith(")") and len(message.rsplit("since ", 1)[1]) == len("HH:MM:SS)")


def test_another_cluster_or_no_cluster_is_not_held_up(tmp_path, lock_dir):
    with apply_lock(tmp_path / "a", "conduit apply a.yaml", cluster="edge-1"):
        with apply_lock(tmp_path / "b", "conduit apply b.yaml", wait=False, cluster="edge-2"):
            pass
        with apply_lock(tmp_path / "c", "conduit apply c.yaml", wait=False):
            pass


def test_the_second_waits_until_the_first_is_done(tmp_path, lock_dir):
    order: list[str] = []
    waiting: list[str] = []
    held = threading.Event()
    release = threading.Event()

    def first():
        with apply_lock(tmp_path / "a", "conduit apply a.yaml", cluster="edge-1"):
            order.append("first in")
            held.set()
            release.wait(10)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    assert held.wait(10)

    def on_wait(message: str) -> None:
        waiting.append(message)
        release.set()

    with apply_lock(tmp_path / "b", "conduit apply b.yaml", wait=True, on_wait=on_wait, cluster="edge-1"):
        order.append("second in")
    thread.join(10)
    assert order == ["first in", "first out", "second in"]
    (message,) = waiting
    assert message.startswith(f"waiting for the apply of pid {os.getpid()} (conduit apply a.yaml, since ")


def _hold(state_dir: str, lock_env: str, ready, release) -> None:
    os.environ[LOCK_DIR_ENV] = lock_env
    with apply_lock(Path(state_dir), "conduit apply held.yaml", cluster="edge-1"):
        ready.set()
        release.wait(20)


def test_another_process_holding_the_cluster_is_named(tmp_path, lock_dir):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(tmp_path / "a"), str(lock_dir), ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(Locked, match=rf"^another apply is running: pid {holder.pid} \(conduit apply held.yaml, since \d\d:\d\d:\d\d\)$"):
            with apply_lock(tmp_path / "b", "conduit apply b.yaml", wait=False, cluster="edge-1"):
                pass
    finally:
        release.set()
        holder.join(20)
    with apply_lock(tmp_path / "b", "conduit apply b.yaml", wait=False, cluster="edge-1"):
        pass  # the holder is gone, and its lock with it


def test_a_lock_directory_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "file" / "locks"))
    with pytest.raises(StateError, match=rf"^cannot make the lock directory {tmp_path}/file/locks: not a directory$"):
        with apply_lock(tmp_path / "a", "conduit apply", cluster="edge-1"):
            pass


def test_reconcile_takes_the_clusters_lock_under_the_hosts_root(tmp_path, monkeypatch):
    monkeypatch.delenv(LOCK_DIR_ENV, raising=False)
    root = tmp_path / "root"
    plan = Plan("edge-1", [], "fp")
    doc = SimpleNamespace(metadata=SimpleNamespace(name="edge-1"))

    def request(state_dir: Path) -> Request:
        host = SimpleNamespace(state_dir=state_dir, root=root)
        return Request(doc, "text", None, host, None, "conduit apply", lambda line: None, planner=lambda _i, d, h: (plan, Observed()), wait=False)

    with apply_lock(tmp_path / "a", "conduit apply a.yaml", cluster="edge-1", root=root):
        assert (root / "run" / "conduit" / "edge-1.lock").exists()
        with pytest.raises(Locked, match="^another apply is running: pid "):
            reconcile(request(tmp_path / "b"))
    started = time.time()
    assert reconcile(request(tmp_path / "b")).status == "no-op"
    assert time.time() - started < 5
