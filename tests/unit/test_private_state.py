"""The state directory is private: 0700 directories and 0600 files, whatever was there before."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from conduit.drivers.files import HOST_CONFIG, atomic_write, open_private, private_tree
from conduit.state.stores import open_state


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): mode(p) for p in sorted(folder.rglob("*")) if not p.is_symlink()}


def assert_private(folder: Path) -> None:
    assert mode(folder) == 0o700
    found = modes(folder)
    assert found, "nothing in the state directory"
    assert {name: m for name, m in found.items() if m != (0o700 if (folder / name).is_dir() else 0o600)} == {}


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def open_state_dir(tmp_path, loose_umask):
    """A state directory as an earlier version left it: 0755, with a 0644 database and WAL files."""
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o755)
    os.chmod(state_dir, 0o755)
    db = sqlite3.connect(state_dir / "state.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    for name in ("state.db", "state.db-wal", "state.db-shm", "state.db-journal", "tracker.log", "apply.lock"):
        (state_dir / name).touch()
        os.chmod(state_dir / name, 0o644)
    old = state_dir / "key-backups" / "20240101T000000Z-gen1"
    old.mkdir(parents=True)
    for folder in (state_dir / "key-backups", old):
        os.chmod(folder, 0o755)
    (old / "n-data.conduit_key.json").write_text("{}")
    os.chmod(old / "n-data.conduit_key.json", 0o644)
    return state_dir


def test_opening_the_state_tightens_the_directory_and_everything_in_it(open_state_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.write_text("not the tool's")
    os.chmod(outside, 0o644)
    (open_state_dir / "link").symlink_to(outside)
    state = open_state(open_state_dir)
    gen = state.history.begin("spec", "digest", None, (None, None), "edge")
    state.history.finish(gen, "succeeded")
    assert state.history.generations()[0].outcome == "succeeded"
    assert_private(open_state_dir)
    assert mode(outside) == 0o644  # a link is not followed out of the state directory


def test_a_new_state_directory_and_its_database_are_private(tmp_path, loose_umask):
    state_dir = tmp_path / "var" / "lib" / "conduit"
    state = open_state(state_dir)
    state.history.begin("spec", "digest", None, (None, None), "edge")
    with closing(state.db.connect()) as db:  # while a connection is open its -wal and -shm files are there
        db.execute("INSERT INTO audit (at, user, event) VALUES (0, 'test', 'x')")
        assert (state_dir / "state.db-wal").exists() and (state_dir / "state.db-shm").exists()
        assert_private(state_dir)
    assert mode(tmp_path / "var") == 0o700 and mode(tmp_path / "var" / "lib") == 0o700


def test_a_file_loosened_while_the_tool_runs_is_tightened_at_the_next_open(tmp_path, loose_umask):
    state_dir = tmp_path / "state"
    open_state(state_dir)
    os.chmod(state_dir / "state.db", 0o644)
    os.chmod(state_dir, 0o755)
    open_state(state_dir)
    assert mode(state_dir) == 0o700 and mode(state_dir / "state.db") == 0o600


def test_the_apply_lock_is_private(open_state_dir):
    from conduit.state.lock import apply_lock

    with apply_lock(open_state_dir, "conduit apply"):
        pass
    assert mode(open_state_dir) == 0o700 and mode(open_state_dir / "apply.lock") == 0o600


def test_an_automatic_key_backup_is_private(open_state_dir, tmp_path):
    from conduit.drivers.keys import backup_dir
    from conduit.engine.planning import target_of
    from conduit.execute.executor import Executor
    from conduit.plan.planner import Step
    from conduit.spec.load import load_text
    from tests.helpers import EXAMPLE, SMALL_VPS
    from tests.unit.test_keys_backup import COMPARTMENT, FakeClient
    from tests.unit.test_keyfile import key_file

    volume = tmp_path / "volumes" / "n-data"
    volume.mkdir(parents=True)
    (volume / "conduit_key.json").write_bytes(key_file())
    (volume / "personal_compartment.json").write_bytes(COMPARTMENT)
    open_state(open_state_dir)
    dest = backup_dir(open_state_dir, 2)
    target = target_of(load_text(EXAMPLE.read_text(), "c.yaml", SMALL_VPS))
    step = Step("containers", "keys", "n-1", "backup", "before a replace", desired={"volumes": ["n-data"], "nodes": {"n-data": "n-1"}})
    Executor(target, tmp_path / "root", open_state_dir, FakeClient(tmp_path / "volumes"), key_backups=dest).run(step)
    assert sorted(p.name for p in dest.iterdir()) == ["SHA256SUMS", "n-data.conduit_key.json", "n-data.personal_compartment.json"]
    assert_private(open_state_dir)


def test_a_backup_into_a_new_folder_makes_it_and_its_parents_private(tmp_path, loose_umask):
    from conduit.drivers.keys import backup
    from tests.unit.test_keys_backup import FakeClient
    from tests.unit.test_keyfile import key_file

    (tmp_path / "volumes" / "n-data").mkdir(parents=True)
    (tmp_path / "volumes" / "n-data" / "conduit_key.json").write_bytes(key_file())
    backup(FakeClient(tmp_path / "volumes"), ["n-data"], tmp_path / "state" / "key-backups" / "manual")
    assert_private(tmp_path / "state")


def test_watch_json_is_private(open_state_dir, tmp_path):
    from conduit.drivers.observe import HostAccess
    from conduit.features.watch import Result, Watcher
    from conduit.features.watch_record import STATUS_FILE
    from tests.helpers import SMALL_VPS

    (open_state_dir / STATUS_FILE).write_text("{}")
    os.chmod(open_state_dir / STATUS_FILE, 0o644)
    Watcher(HostAccess(tmp_path, open_state_dir, None), lambda: SMALL_VPS)._record(Result("unchanged"), "interval", "d", None)
    assert mode(open_state_dir / STATUS_FILE) == 0o600
    assert_private(open_state_dir)


def test_the_tracker_log_and_pid_file_are_private(open_state_dir, tmp_path, monkeypatch):
    from conduit.execute import executor as execute
    from conduit.engine.planning import target_of
    from conduit.execute.executor import Executor
    from conduit.plan.planner import Step
    from conduit.render.tracker import render_tracker
    from conduit.spec.load import load_text
    from tests.helpers import EXAMPLE, SMALL_VPS

    class Started:
        pid = 2**22 + 17  # above any pid this test could signal

    started = []
    monkeypatch.setattr(execute.subprocess, "Popen", lambda *a, **kw: started.append(kw) or Started())
    doc = load_text(EXAMPLE.read_text(), "c.yaml", SMALL_VPS)
    (tracker,) = render_tracker(doc)
    Executor(target_of(doc), tmp_path / "root", open_state_dir, None).run(
        Step("tracker", "tracker", "tracker", "create", "not on the host", [], tracker.props)
    )
    assert len(started) == 1 and (open_state_dir / f"tracker-{doc.metadata.name}.pid").read_text() == f"{Started.pid}\n"
    assert_private(open_state_dir)


def test_the_git_mirror_under_the_state_directory_is_private(open_state_dir, tmp_path):
    from conduit.state.git import fetch

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cluster.yaml").write_text("x: 1\n")
    env = dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@b", GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@b")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "spec"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    open_state(open_state_dir)
    fetch(str(repo), "main", open_state_dir / "git" / "abc", most=1 << 28)
    found = modes(open_state_dir / "git")
    assert mode(open_state_dir / "git") == 0o700 and found
    assert {name: m for name, m in found.items() if m & 0o077} == {}


def test_atomic_write_is_private_unless_asked_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        atomic_write(tmp_path / "f", "x")
        atomic_write(tmp_path / "host.conf", "y", HOST_CONFIG)
        with open_private(tmp_path / "log") as f:
            f.write(b"line\n")
    finally:
        os.umask(old)
    assert (mode(tmp_path / "f"), mode(tmp_path / "host.conf"), mode(tmp_path / "log")) == (0o600, 0o644, 0o600)
    assert (tmp_path / "f").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "host.conf", "log"]  # no temporary file left


def test_two_writers_of_one_file_each_leave_it_whole(tmp_path):
    import threading

    texts = [str(n) * 50_000 for n in range(8)]
    failures: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(20):
                atomic_write(tmp_path / "kept.json", text)
        except BaseException as exc:  # noqa: BLE001 - the test reports any
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert (tmp_path / "kept.json").read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["kept.json"]


def test_the_tracker_unit_stays_readable_host_configuration(tmp_path, monkeypatch):
    from conduit.execute import executor as execute
    from conduit.engine.planning import target_of
    from conduit.execute.executor import Executor
    from conduit.plan.planner import Step
    from conduit.render.tracker import render_tracker
    from conduit.spec.load import load_text
    from tests.helpers import EXAMPLE, SMALL_VPS

    from conduit.engine.targets import executable
    from conduit.plan.planner import Plan
    from conduit.plan.target import Runtime

    monkeypatch.setattr(execute, "systemctl", lambda *a, **kw: None)
    doc = load_text(EXAMPLE.read_text(), "c.yaml", SMALL_VPS)
    (tracker,) = render_tracker(doc)
    create = Step("tracker", "tracker", "tracker", "create", "not on the host", [], tracker.props)
    plan = executable(Plan(doc.metadata.name, [create], "fp"), doc, Runtime(True, "/usr/bin/conduit", str(tmp_path / "state")))
    Executor(plan.target, tmp_path / "root", tmp_path / "state", None).run(plan.steps[0])
    assert mode(tmp_path / "root/etc/systemd/system/conduit-tracker-edge-1.service") == 0o644
