"""State you can trust: every open checks the database, every finished generation leaves a copy,
a damaged state.db is moved aside and restored (or a fresh history starts) with one line, and a
state directory that cannot take a write stops every changing command before any change."""

from __future__ import annotations

import errno
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from conduit.cli.root import main
from conduit.plan.planner import Plan
from conduit.engine.planning import Observed
from conduit.state import db as store
from conduit.state.db import BACKUP_NAME, StateError, check_writable
from conduit.state.stores import open_state, read_state
from tests.helpers import EXAMPLE


def _history(state_dir: Path, count: int = 3) -> list:
    state = open_state(state_dir)
    for n in range(count):
        gen = state.history.begin(f"spec {n}\n" + "x" * 8000, f"hash{n}", None, (None, None), "edge")
        state.history.finish(gen, "succeeded" if n % 2 == 0 else "failed", None if n % 2 == 0 else "a gate failed")
    return state.history.generations()


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 200)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "something").write_text("x")


BREAKS = {"truncated": _truncate, "garbage": _garbage, "zero-length": _empty, "a directory": _directory}


def _aside(state_dir: Path) -> list[str]:
    return sorted(p.name for p in state_dir.iterdir() if p.name.startswith("state.db.corrupt-"))


# ------------------------------------------------------------------ the copy


def test_every_finished_generation_leaves_a_private_copy(tmp_path):
    gens = _history(tmp_path / "state")
    backup = tmp_path / "state" / BACKUP_NAME
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert open_state(tmp_path / "copy").history.generations() == []  # a fresh state elsewhere, for comparison
    os.replace(backup, tmp_path / "copy" / "state.db")
    assert open_state(tmp_path / "copy").history.generations() == gens
    assert sorted(os.listdir(tmp_path / "state")) == ["state.db"]  # no temporary file or -wal left beside it


# ------------------------------------------------------------------ a damaged state.db


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_a_damaged_database_is_moved_aside_and_restored_from_the_copy(tmp_path, name):
    state_dir = tmp_path / "state"
    gens = _history(state_dir)
    BREAKS[name](state_dir / "state.db")
    state = open_state(state_dir)
    assert state.history.generations() == gens
    assert state.db.recovered and "\n" not in state.db.recovered
    assert "restored 3 generations from state.db.backup" in state.db.recovered
    (aside,) = _aside(state_dir)
    assert aside in state.db.recovered
    assert open_state(state_dir).db.recovered is None  # said once: the restored database is intact


@pytest.mark.parametrize("name", ["truncated", "garbage", "a directory"])
def test_without_a_copy_a_fresh_history_starts_and_says_so(tmp_path, name):
    state_dir = tmp_path / "state"
    _history(state_dir)
    (state_dir / BACKUP_NAME).unlink()
    BREAKS[name](state_dir / "state.db")
    state = open_state(state_dir)
    assert state.history.generations() == []
    assert state.db.recovered.endswith("there is no usable backup: moved it to " + _aside(state_dir)[0] + "; starting a fresh history")


def test_two_processes_opening_a_damaged_database_repair_it_once(tmp_path):
    state_dir = tmp_path / "state"
    gens = _history(state_dir)
    _garbage(state_dir / "state.db")
    with ThreadPoolExecutor(4) as pool:
        opened = list(pool.map(lambda _: open_state(state_dir), range(4)))
    assert len(_aside(state_dir)) == 1 and sum(1 for s in opened if s.db.recovered) == 1
    assert all(s.history.generations() == gens for s in opened)


def test_an_empty_database_without_a_copy_starts_fresh_and_says_so(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.db").write_bytes(b"")
    state = open_state(state_dir)
    assert state.db.recovered == f"{state_dir}/state.db was empty and there is no backup: starting a fresh history"
    assert state.history.generations() == []


def test_a_new_state_directory_is_no_recovery(tmp_path):
    assert open_state(tmp_path / "new").db.recovered is None


def test_a_damaged_copy_is_not_restored(tmp_path):
    state_dir = tmp_path / "state"
    _history(state_dir)
    _garbage(state_dir / BACKUP_NAME)
    _garbage(state_dir / "state.db")
    state = open_state(state_dir)
    assert state.history.generations() == [] and "no usable backup" in state.db.recovered


# ------------------------------------------------------------------ a directory that cannot take a write


def _read_only(folder: Path, sync: bool = True) -> None:
    raise PermissionError(errno.EROFS, "Read-only file system", str(folder))


def test_a_directory_that_refuses_the_probe_is_not_writable(tmp_path):
    with pytest.raises(StateError) as caught:
        check_writable(tmp_path / "state", probe=_read_only)
    assert str(caught.value) == f"state directory {tmp_path}/state is not writable: read-only file system; make it a writable directory or give another --state-dir"


def test_a_full_disk_is_told_to_free_space(tmp_path):
    def full(folder: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    with pytest.raises(StateError) as caught:
        check_writable(tmp_path / "state", probe=full)
    assert str(caught.value) == (f"state directory {tmp_path}/state is not writable: no space left on device; "
                                 "free space on its filesystem, then run the command again")


def test_the_probe_is_written_fsynced_and_removed(tmp_path):
    check_writable(tmp_path / "state")
    assert os.listdir(tmp_path / "state") == []


def test_a_full_filesystem_is_refused(tmp_path, monkeypatch):
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(**{**_fields(real(p)), "f_bavail": 10, "f_frsize": 4096}))
    with pytest.raises(StateError, match=r"is full: 40960 bytes free, at least 1048576 needed; free space there, then run the command again"):
        check_writable(tmp_path / "state")


def _fields(result: os.statvfs_result) -> dict:
    return {name: getattr(result, name) for name in dir(result) if name.startswith("f_")}


def test_a_state_directory_under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StateError, match="is not writable: not a directory; make it a writable directory or give another --state-dir"):
        check_writable(tmp_path / "file" / "state")
    with pytest.raises(StateError, match="not a directory"):
        open_state(tmp_path / "file" / "state")
    with pytest.raises(StateError, match="not a directory"):
        read_state(tmp_path / "file" / "state")


def test_a_reader_of_a_read_only_directory_reads_and_repairs_nothing(tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    gens = _history(state_dir)
    monkeypatch.setattr(store, "write_probe", _read_only)
    state = read_state(state_dir)
    assert state.db.readonly and state.history.generations() == gens
    _garbage(state_dir / "state.db")
    with pytest.raises(StateError, match="state.db is damaged .* the directory cannot be written to restore it"):
        read_state(state_dir)
    assert _aside(state_dir) == []


def test_no_state_yet_is_nothing_to_read(tmp_path):
    assert read_state(tmp_path / "none") is None
    assert not (tmp_path / "none").exists()


def test_sqlite_and_filesystem_errors_are_one_state_error(tmp_path):
    state = open_state(tmp_path / "state")
    (tmp_path / "state" / "state.db").unlink()
    (tmp_path / "state" / "state.db").mkdir()
    with pytest.raises(StateError) as caught:
        state.history.generations()
    assert str(caught.value) == f"state directory {tmp_path}/state: cannot read the generations: unable to open database file"


# ------------------------------------------------------------------ the command line


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(state_dir: Path, *args: str):
        result = runner.invoke(main, ["--state-dir", str(state_dir), *args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert "Traceback" not in result.output
        return result

    return invoke


def _one_error(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_history_restores_and_warns_once(cli, tmp_path, name):
    state_dir = tmp_path / "state"
    gens = _history(state_dir)
    BREAKS[name](state_dir / "state.db")
    result = cli(state_dir, "history", "--json")
    assert result.exit_code == 0
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"warning: {state_dir}/state.db was ") and "restored 3 generations" in warning
    assert [g["id"] for g in json.loads(result.stdout)] == [g.id for g in gens]


def test_history_of_a_damaged_state_without_a_copy(cli, tmp_path):
    state_dir = tmp_path / "state"
    _history(state_dir)
    (state_dir / BACKUP_NAME).unlink()
    _garbage(state_dir / "state.db")
    result = cli(state_dir, "history")
    assert result.exit_code == 0 and result.stdout.strip() == "No generations yet."
    (warning,) = result.stderr.splitlines()
    assert warning.endswith("starting a fresh history")


def test_history_of_a_read_only_directory_still_reads(cli, tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    _history(state_dir)
    monkeypatch.setattr(store, "write_probe", _read_only)
    result = cli(state_dir, "history")
    assert result.exit_code == 0 and "a gate failed" in result.stdout and result.stderr == ""


def test_history_that_cannot_read_is_one_line(cli, tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    _history(state_dir)
    _garbage(state_dir / "state.db")
    monkeypatch.setattr(store, "write_probe", _read_only)
    assert "cannot be written to restore it" in _one_error(cli(state_dir, "history"))
    (tmp_path / "file").write_text("x")
    assert "not a directory" in _one_error(cli(tmp_path / "file" / "state", "history"))


def _broken(kind: str, tmp_path: Path, monkeypatch) -> tuple[Path, str]:
    """A state directory that cannot take a write, and the reason the refusal gives."""
    state_dir = tmp_path / "state"
    if kind == "read-only":
        monkeypatch.setattr(store, "write_probe", _read_only)
        return state_dir, f"state directory {state_dir} is not writable: read-only file system; make it a writable directory or give another --state-dir"
    if kind == "full":
        real = os.statvfs
        monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(**{**_fields(real(p)), "f_bavail": 0}))
        return state_dir, f"state directory {state_dir} is full: 0 bytes free, at least 1048576 needed; free space there, then run the command again"
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "state", f"state directory {tmp_path}/file/state is not writable: not a directory; make it a writable directory or give another --state-dir"


KINDS = ["read-only", "full", "under a file"]


@pytest.mark.parametrize("kind", KINDS)
def test_apply_refuses_before_any_change(cli, tmp_path, monkeypatch, kind):
    state_dir, why = _broken(kind, tmp_path, monkeypatch)
    planned = []
    monkeypatch.setattr("conduit.engine.reconcile.plan_on_host", lambda intent, doc, host: planned.append(doc) or (Plan("c", [], "fp"), Observed()))
    line = _one_error(cli(state_dir, "apply", "--auto-approve", str(EXAMPLE)))
    assert line == f"error: {why}" and planned == []


@pytest.mark.parametrize("kind", KINDS)
def test_destroy_and_watch_refuse_before_any_change(cli, tmp_path, monkeypatch, kind):
    state_dir, why = _broken(kind, tmp_path, monkeypatch)
    assert _one_error(cli(state_dir, "destroy", "--auto-approve", str(EXAMPLE))) == f"error: {why}"
    assert _one_error(cli(state_dir, "watch", str(EXAMPLE))) == f"error: {why}"


@pytest.mark.parametrize("kind", KINDS)
def test_rollback_refuses_before_any_change(cli, tmp_path, monkeypatch, kind):
    if kind != "under a file":
        _history(tmp_path / "state")
    state_dir, why = _broken(kind, tmp_path, monkeypatch)
    assert _one_error(cli(state_dir, "rollback", "--auto-approve")) == f"error: {why}"


def test_plan_with_a_state_it_cannot_read_warns_and_plans(cli, tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    _history(state_dir)
    _garbage(state_dir / "state.db")
    monkeypatch.setattr(store, "write_probe", _read_only)
    monkeypatch.setattr("conduit.cli.plan.plan_on_host", lambda intent, spec, host: (Plan(spec.metadata.name, [], "fp"), Observed()))
    result = cli(state_dir, "plan", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "cannot be written to restore it; the plan does not know the host's history" in result.output
    assert "Traceback" not in result.output


def test_status_that_cannot_read_the_state_is_one_line(cli, tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    _history(state_dir)
    _garbage(state_dir / "state.db")
    monkeypatch.setattr(store, "write_probe", _read_only)
    monkeypatch.setattr("conduit.drivers.observe.HostAccess.docker", lambda self: None)
    assert "cannot be written to restore it" in _one_error(cli(state_dir, "status", "--no-drift", str(EXAMPLE)))
