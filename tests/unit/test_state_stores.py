"""Each store of the state keeps its own purpose, and all of them share one database file."""

from __future__ import annotations

import getpass
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from types import SimpleNamespace

import pytest

from conduit.spec.image import ImageFacts
from conduit.state import images as images_module
from conduit.state.audit import Audit
from conduit.state.db import Database, StateError
from conduit.state.history import History
from conduit.state.images import Images, NodeImage
from conduit.state.samples import TrackerSamples
from conduit.state.stores import open_state, read_state
from conduit.state.tokens import Tokens


def events(db: Database) -> list[str]:
    return [row["event"] for row in reversed(Audit(db).recent())]


def test_the_stores_share_one_database_file(tmp_path):
    state = open_state(tmp_path)
    state.history.begin("spec", "h", None, (None, None), "edge")
    state.tokens.add("ci", "viewer", "d" * 64)
    state.samples.add(1.0, "metrics", {"DE": (1, 2, 3)}, 30)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["state.db"]
    again = read_state(tmp_path)
    assert [g.id for g in again.history.generations()] == [1]
    assert again.tokens.all()[0][:2] == ("ci", "viewer") and again.samples.latest() == {"DE": (1, 2, 3)}


def test_history_marks_what_was_killed_and_discards_what_changed_nothing(tmp_path):
    db = Database(tmp_path)
    history = History(db)
    first = history.begin("spec: 1\n", "a", None, (None, None), "edge")
    history.step(first, "nodes", "container", "n-1", "create", "done")
    history.finish(first, "succeeded")
    second = history.begin("spec: 2\n", "b", None, ("c0ffee", False), "edge")
    history.step(second, "nodes", "container", "n-1", "replace", "started")
    assert [g.id for g in history.interrupted()] == [second]
    history.mark_interrupted()
    assert history.generation(second).outcome == "interrupted" and history.interrupted() == []
    assert history.journal(second) == [("nodes", "container", "n-1", "replace", "started", None)]
    third = history.begin("spec: 3\n", "c", None, (None, None), "edge")
    history.discard(third, "the image could not be pulled")
    assert [g.id for g in history.generations()] == [first, second] and history.journal(third) == []
    assert history.last_good().id == first and history.good_before_current() is None
    assert events(db) == ["apply.begin", "apply.succeeded", "apply.begin", "apply.interrupted", "apply.begin", "apply.nothing_changed"]


def test_the_audit_log_names_who_and_reads_back_newest_first(tmp_path):
    audit = Audit(Database(tmp_path))
    audit.record("first")
    audit.record("second", {"status": 403}, user="token ci")
    newest, oldest = audit.recent()
    assert (newest["event"], newest["user"], newest["detail"]) == ("second", "token ci", {"status": 403})
    assert (oldest["event"], oldest["detail"]) == ("first", {}) and oldest["user"] in (getpass.getuser(), str(os.getuid()))
    assert [row["event"] for row in audit.recent(1)] == ["second"]


def test_tokens_are_kept_as_digests_one_per_name_and_every_change_is_audited(tmp_path):
    db = Database(tmp_path)
    tokens = Tokens(db)
    assert tokens.add("ci", "operator", "1" * 64)
    assert not tokens.add("ci", "viewer", "2" * 64)  # a name is taken once
    assert tokens.by_digest("1" * 64) == ("ci", "operator") and tokens.by_digest("2" * 64) is None
    assert tokens.revoke("ci") and not tokens.revoke("ci")
    assert tokens.all() == [] and tokens.by_digest("1" * 64) is None
    assert events(db) == ["token.create", "token.revoke"]


def test_images_remember_facts_since_and_refusals(tmp_path, monkeypatch):
    db = Database(tmp_path)
    images = Images(db)
    images.save_facts("sha256:a", ImageFacts("cli:2", "probe", version="2.0.1").to_json())
    assert images.facts("sha256:a").version == "2.0.1" and images.facts("sha256:b") is None
    images.save_facts("sha256:b", '{"written": "by a newer version"}')
    assert images.facts("sha256:b") is None  # a record this version cannot read is as good as none
    clock = iter([100.0, 200.0, 300.0, 400.0])
    monkeypatch.setattr(images_module, "time", SimpleNamespace(time=lambda: next(clock)))
    images.record_nodes(1, {"n-1": NodeImage("cli:2", "sha256:a", "sha256:d", "2.0.1")})
    images.record_nodes(2, {"n-1": NodeImage("cli:2", "sha256:a", "sha256:d", "2.0.1")})
    images.record_nodes(3, {"n-1": NodeImage("cli:2", "sha256:b", "sha256:e", None)})
    assert images.of_nodes(2)["n-1"].since == 100.0  # the same image ID: since it first ran
    assert images.of_nodes()["n-1"] == NodeImage("cli:2", "sha256:b", "sha256:e", None, 300.0)
    images.refuse("sha256:b", "cli:2", 3, "its canary failed")
    assert images.refused() == {"sha256:b": (3, "its canary failed")}


def test_the_registrys_answers_are_remembered_by_name_newest_first(tmp_path, monkeypatch):
    images = Images(Database(tmp_path))
    clock = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr(images_module, "time", SimpleNamespace(time=lambda: next(clock)))
    images.record_check("cli:2", "sha256:d")
    images.record_check("cli:latest", "sha256:d")
    images.record_check("cli:2", None)  # asked again: the tag is gone
    assert images.last_check("cli:2") == (3.0, None) and images.last_check("cli:3") is None
    assert images.checked_names("sha256:d") == ["cli:latest"]


def test_tracker_samples_keep_their_retention_and_addresses_their_hours(tmp_path):
    samples = TrackerSamples(Database(tmp_path))
    day = 86400
    samples.add(0.0, "metrics", {"DE": (1, 10, 20)}, 2)
    samples.add(day, "capture", {"DE": (2, 30, 40), "IR": (5, 50, 60)}, 2)
    assert samples.latest() == {"DE": (2, 30, 40), "IR": (5, 50, 60)}
    samples.add(3 * day, "metrics", {}, 2)  # nothing sampled, and the first sample is past its retention
    with closing(sqlite3.connect(tmp_path / "state.db")) as db:
        assert db.execute("SELECT at FROM tracker_samples ORDER BY at").fetchall() == [(day,), (day,)]
    samples.add_addresses(0.0, {"203.0.113.7": ("IR", 1, 2)}, 1)
    samples.add_addresses(7200.0, {"198.51.100.1": ("DE", 3, 4)}, 1)
    assert samples.addresses() == [(7200.0, "198.51.100.1", "DE", 3, 4)]


def test_journal_rows_written_side_by_side_through_one_connection_are_each_committed_at_once(tmp_path):
    """Steps run from several threads share the run's connection; every row is in the file as soon
    as its step is journalled (what a killed apply leaves), and the journal keeps working after the run."""
    history = History(Database(tmp_path))
    gen = history.begin("spec: 1\n", "a", None, (None, None), "edge")
    names = [f"n-{i}" for i in range(40)]
    with history.journal_open():
        with history.journal_open():  # nested (a rollback inside a run): the outer connection
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda name: history.step(gen, "containers", "container", name, "create", "started"), names))
        other = History(Database(tmp_path))  # another reader of the file, as the next apply would be
        assert sorted(row[2] for row in other.journal(gen)) == sorted(names)
        history.step(gen, "containers", "container", "n-0", "create", "done")
        assert other.journal(gen)[-1] == ("containers", "container", "n-0", "create", "done", None)
    history.step(gen, "containers", "container", "n-1", "create", "failed", "exit code 3")
    assert History(Database(tmp_path)).journal(gen)[-1] == ("containers", "container", "n-1", "create", "failed", "exit code 3")
    assert len(history.journal(gen)) == 42



def _queued_behind_a_writer(history: History, gen: int, names: list[str]) -> list:
    """Each name's step row sent from its own thread while the journal's writer is busy (its lock
    held here): they wait in one queue. Returns the threads' futures, once all rows are queued."""
    pool = ThreadPoolExecutor(len(names))
    futures = [pool.submit(history.step, gen, "containers", "container", name, "create", "started") for name in names]
    while len(history._queued.rows) < len(names):
        time.sleep(0.001)
    pool.shutdown(wait=False)
    return futures


def test_rows_that_wait_for_the_writer_go_together_in_one_transaction(tmp_path):
    history = History(Database(tmp_path))
    gen = history.begin("spec: 1\n", "a", None, (None, None), "edge")
    names = [f"n-{i}" for i in range(5)]
    with history.journal_open():
        statements: list[str] = []
        history._journal.set_trace_callback(statements.append)
        with history._journal_lock:
            futures = _queued_behind_a_writer(history, gen, names)
            assert not any(f.done() for f in futures)  # no step goes on before its row is written
        for future in futures:
            future.result()
        assert statements.count("COMMIT") == 1
        assert sorted(row[2] for row in History(Database(tmp_path)).journal(gen)) == names


def test_every_step_whose_row_was_in_a_failed_transaction_hears_of_it(tmp_path):
    history = History(Database(tmp_path))
    gen = history.begin("spec: 1\n", "a", None, (None, None), "edge")
    with history.journal_open():
        with history._journal_lock:
            futures = _queued_behind_a_writer(history, gen, ["n-1", "n-2", "n-3"])
            history._journal.close()  # the writer's connection fails under it
        for future in futures:
            with pytest.raises(StateError, match="record a step in the journal"):
                future.result()
        history._journal = history.db.connect(shared=True)  # for journal_open's own close
    assert history.journal(gen) == []

def test_a_store_says_one_state_error_line(tmp_path):
    tokens = Tokens(Database(tmp_path))
    (tmp_path / "state.db").unlink()
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StateError) as caught:
        tokens.all()
    assert str(caught.value) == f"state directory {tmp_path}: cannot read the API tokens: unable to open database file"


def _applied(history: History, cluster: str | None, outcome: str = "succeeded") -> int:
    gen = history.begin(f"name: {cluster}\n", "h", None, (None, None), cluster)
    history.finish(gen, outcome)
    return gen


def test_each_cluster_reads_its_own_generations_and_those_from_before_clusters_were_named(tmp_path):
    history = History(Database(tmp_path))
    old = _applied(history, None)  # recorded before generations named their cluster
    a1, b1, a2 = _applied(history, "a"), _applied(history, "b"), _applied(history, "a")
    b2 = _applied(history, "b", "rolled_back")
    assert [g.id for g in history.generations("a")] == [old, a1, a2]
    assert [g.id for g in history.generations("b")] == [old, b1, b2]
    assert [g.id for g in history.generations()] == [old, a1, b1, a2, b2]  # ids stay global
    assert history.last_good("b").id == b1 and history.last_good("a").id == a2
    assert history.good_before_current("b").id == old and history.good_before_current("a").id == a1
    assert history.last_good("c").id == old and history.clusters() == ["a", "b"]
    assert history.generation(b2).cluster == "b" and history.generation(old).cluster is None


OLD_GENERATIONS = """CREATE TABLE generations (id INTEGER PRIMARY KEY, spec_text TEXT NOT NULL, spec_hash TEXT NOT NULL,
    spec_path TEXT, git_commit TEXT, git_dirty INTEGER, started REAL NOT NULL, finished REAL, outcome TEXT NOT NULL, reason TEXT);
INSERT INTO generations (spec_text, spec_hash, started, finished, outcome) VALUES ('spec: old\n', 'o', 1.0, 2.0, 'succeeded');"""


def test_a_database_of_the_old_schema_gains_the_cluster_column_on_open(tmp_path):
    with closing(sqlite3.connect(tmp_path / "state.db")) as db, db:
        db.executescript(OLD_GENERATIONS)
    history = History(Database(tmp_path))
    (old,) = history.generations()
    assert old.cluster is None and old.spec_text == "spec: old\n"
    new = _applied(history, "a")
    assert [g.id for g in history.generations("a")] == [old.id, new] and history.last_good("b").id == old.id
    Database(tmp_path)  # opened again: nothing more to add
    with closing(sqlite3.connect(tmp_path / "state.db")) as db:
        assert [row[1] for row in db.execute("PRAGMA table_info(generations)")].count("cluster") == 1


def test_an_old_database_read_only_reads_as_every_clusters(tmp_path):
    with closing(sqlite3.connect(tmp_path / "state.db")) as db, db:
        db.executescript(OLD_GENERATIONS)
    history = History(Database(tmp_path, readonly=True))
    assert [(g.id, g.cluster) for g in history.generations("a")] == [(1, None)]


def test_after_a_destroy_no_generation_is_the_good_one_the_host_runs(tmp_path):
    """A failed apply after a destroy puts back the empty host, not the destroyed cluster; `rollback`
    without N brings back the last generation the cluster ran."""
    history = History(Database(tmp_path))
    _applied(history, "a")
    ran = _applied(history, "a")
    _applied(history, "b")
    _applied(history, "a", "destroyed")
    assert history.last_good("a") is None and history.good_before_current("a").id == ran
    _applied(history, "a", "rolled_back")
    assert history.last_good("a") is None and history.good_before_current("a").id == ran
    again = _applied(history, "a")
    assert history.last_good("a").id == again and history.good_before_current("a").id == ran
