"""Image updates, the pure parts: the canary's place in the schedule, the maintenance window,
and the analysis of a canary's clients against its baseline."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conduit.execute import canary
from conduit.engine.updates import in_window
from conduit.plan.planner import Change, Step
from conduit.plan.schedule import Rollout, containers_order
from conduit.spec.spec import MaintenanceWindow


def replace(name: str, *changes: Change) -> Step:
    return Step("containers", "container", name, "replace", "differs from the spec", list(changes), {"image": "x"})


NEW_IMAGE = Change("image_id", "sha256:old", "sha256:new", True)
NEW_FLAGS = Change("command", ["start"], ["start", "-v"], True)


def rollout(**kw) -> Rollout:
    return Rollout(**({"image": "x", "image_present": True, "max_unavailable": 2, "drain_seconds": 0, "front": False} | kw))


def shape(steps: list[Step]) -> list[tuple[str, str, int | None]]:
    return [(s.action, s.id, s.batch) for s in steps]


def test_a_new_image_goes_to_the_canary_alone_and_is_judged_before_the_rest():
    steps = [replace(f"n-{i}", NEW_IMAGE) for i in range(1, 6)]
    order = containers_order(steps, rollout(canary=1, analysis_seconds=300, min_clients_ratio=0.6))
    assert shape(order) == [
        ("measure", "n-1", None),
        ("replace", "n-1", 1),
        ("judge", "n-1", None),
        ("replace", "n-2", 2), ("replace", "n-3", 2),
        ("replace", "n-4", 3), ("replace", "n-5", 3),
    ]
    judge = order[2]
    assert judge.desired == {"nodes": ["n-1"], "seconds": 300, "ratio": 0.6}
    assert "60%" in judge.reason and "300s" in judge.reason


def test_two_canaries_are_one_batch():
    order = containers_order([replace(f"n-{i}", NEW_IMAGE) for i in range(1, 4)], rollout(canary=2, max_unavailable=1))
    assert shape(order)[:4] == [("measure", "n-1,n-2", None), ("replace", "n-1", 1), ("replace", "n-2", 1), ("judge", "n-1,n-2", None)]
    assert order[0].desired == {"nodes": ["n-1", "n-2"]}


@pytest.mark.parametrize("changes", [(NEW_FLAGS,), (Change("image_id", None, "sha256:new", True),)])
def test_no_canary_without_a_move_from_one_image_to_another(changes):
    order = containers_order([replace(f"n-{i}", *changes) for i in range(1, 4)], rollout(canary=1, max_unavailable=1))
    assert [s.action for s in order] == ["replace"] * 3 and [s.batch for s in order] == [1, 2, 3]


def test_no_canary_when_the_plan_takes_no_update():
    """A rollback moves nodes back by image ID: no analysis window on the way back."""
    order = containers_order([replace(f"n-{i}", NEW_IMAGE) for i in range(1, 3)], rollout(canary=0, max_unavailable=1))
    assert [s.action for s in order] == ["replace", "replace"]


def test_the_canary_is_drained_and_restored_around_its_batch_with_a_front():
    order = containers_order([replace("n-1", NEW_IMAGE), replace("n-2", NEW_IMAGE)], rollout(canary=1, front=True, max_unavailable=1))
    assert [(s.kind, s.action) for s in order][:5] == [
        ("canary", "measure"), ("backends", "drain"), ("container", "replace"), ("backends", "restore"), ("canary", "judge")
    ]


@given(st.integers(1, 12), st.integers(1, 5), st.integers(0, 4))
def test_every_node_is_replaced_once_and_the_canaries_first(count, size, canaries):
    steps = [replace(f"n-{i}", NEW_IMAGE) for i in range(1, count + 1)]
    order = containers_order(steps, rollout(canary=canaries, max_unavailable=size))
    replaced = [s.id for s in order if s.action == "replace"]
    assert sorted(replaced) == sorted(s.id for s in steps) and len(replaced) == count
    judges = [i for i, s in enumerate(order) if s.action == "judge"]
    if canaries:
        (judge,) = judges
        before = [s.id for s in order[:judge] if s.action == "replace"]
        assert before == [f"n-{i}" for i in range(1, min(canaries, count) + 1)]
    else:
        assert judges == []
    sizes = {}
    for s in order:
        if s.action == "replace":
            sizes[s.batch] = sizes.get(s.batch, 0) + 1
    assert all(n <= size for b, n in sizes.items() if not (canaries and b == 1))


# ------------------------------------------------------------------ the maintenance window


def at(hh: int, mm: int) -> datetime.datetime:
    return datetime.datetime(2026, 12, 2, hh, mm, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    ("start", "end", "now", "inside"),
    [
        ("02:00", "05:00", at(2, 0), True),
        ("02:00", "05:00", at(4, 59), True),
        ("02:00", "05:00", at(5, 0), False),
        ("02:00", "05:00", at(1, 59), False),
        ("23:00", "01:30", at(23, 30), True),
        ("23:00", "01:30", at(0, 10), True),
        ("23:00", "01:30", at(1, 30), False),
        ("23:00", "01:30", at(12, 0), False),
    ],
)
def test_the_maintenance_window_is_utc_and_may_pass_midnight(start, end, now, inside):
    assert in_window(MaintenanceWindow(start=start, end=end), now) is inside


def test_no_window_is_any_time():
    assert in_window(None, at(13, 37))


# ------------------------------------------------------------------ the analysis


class Clock(canary.Clock):
    def __init__(self):
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def counts(monkeypatch, series: dict[int, list[int | None]]) -> None:
    """Each port answers its series of client counts, one per look, the last one for ever."""
    looks = {port: list(values) for port, values in series.items()}

    def clients(port: int):
        values = looks[port]
        return values.pop(0) if len(values) > 1 else values[0]

    monkeypatch.setattr(canary, "clients", clients)


def test_a_canary_that_wins_back_its_share_passes_as_soon_as_it_does(monkeypatch):
    counts(monkeypatch, {9001: [0, 3, 9, 20]})
    clock = Clock()
    canary.analyse({"n-1": 9001}, {"n-1": 40}, seconds=600, ratio=0.5, clock=clock)
    assert clock.t == 3 * canary.POLL_SECONDS


def test_a_canary_below_its_share_fails_when_the_window_ends(monkeypatch):
    counts(monkeypatch, {9001: [2]})
    clock = Clock()
    with pytest.raises(canary.AnalysisFailed, match=r"within 600 s: n-1 has 2 clients, needs 20 of the 40 it had"):
        canary.analyse({"n-1": 9001}, {"n-1": 40}, seconds=600, ratio=0.5, clock=clock)
    assert clock.t == 600


def test_a_canary_that_had_no_clients_is_left_to_the_gates(monkeypatch):
    counts(monkeypatch, {9001: [None]})
    clock = Clock()
    canary.analyse({"n-1": 9001}, {"n-1": 0}, seconds=600, ratio=0.5, clock=clock)
    assert clock.t == 0


def test_a_canary_whose_metrics_do_not_answer_counts_as_none(monkeypatch):
    counts(monkeypatch, {9001: [None]})
    with pytest.raises(canary.AnalysisFailed, match="has 0 clients, needs 1 of the 1"):
        canary.analyse({"n-1": 9001}, {"n-1": 1}, seconds=10, ratio=0.1, clock=Clock())


@given(st.integers(0, 10_000), st.floats(0.01, 1.0))
def test_the_share_needed_is_at_least_one_and_never_above_the_baseline(baseline, ratio):
    need = canary.needed(baseline, ratio)
    assert need >= 1 and (baseline == 0 or need <= baseline) and need >= baseline * ratio


def test_update_under_policy_off_says_how_to_turn_it_on(tmp_path):
    from click.testing import CliRunner

    from conduit.cli.root import main
    from tests.helpers import cli_env, dump, minimal

    spec = tmp_path / "cluster.yaml"
    spec.write_text(dump(minimal()))
    result = CliRunner().invoke(main, ["--state-dir", str(tmp_path / "state"), "update", "--check", str(spec)], env=cli_env())
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {spec}: spec.updates.policy is off, so the registry is never asked; set it to report or auto"


@pytest.mark.parametrize(("canary", "count", "nodes"), [(1, 8, 1), (3, 8, 3), ("25%", 8, 2), ("10%", 8, 1), ("100%", 5, 5), ("30%", 7, 3)])
def test_the_canary_is_a_count_or_a_share_of_the_nodes_rounded_up(canary, count, nodes):
    from conduit.engine.planning import canaries
    from conduit.spec.load import load_text
    from tests.helpers import SMALL_VPS, dump, minimal

    doc = load_text(dump(minimal(containers={"count": count}, updates={"policy": "report", "canary": canary})), "c.yaml", SMALL_VPS)
    assert canaries(doc) == nodes


@pytest.mark.parametrize("canary", ["0%", "101%", "25 %", "a%", 0, 201])
def test_a_canary_that_is_neither_is_refused_naming_the_field(canary):
    from conduit.errors import SpecError
    from conduit.spec.load import load_text
    from tests.helpers import SMALL_VPS, dump, minimal

    with pytest.raises(SpecError) as caught:
        load_text(dump(minimal(updates={"policy": "report", "canary": canary})), "c.yaml", SMALL_VPS)
    assert any("spec.updates.canary" in line for line in caught.value.lines())


@pytest.mark.parametrize(
    ("image", "repo", "tag"),
    [
        ("ghcr.io/psiphon-inc/conduit/cli:2.0.1", "ghcr.io/psiphon-inc/conduit/cli", "2.0.1"),
        ("127.0.0.1:5000/conduit:stable", "127.0.0.1:5000/conduit", "stable"),
        ("127.0.0.1:5000/conduit", "127.0.0.1:5000/conduit", None),
        ("conduit", "conduit", None),
        ("conduit@sha256:ab", "conduit", None),
        ("conduit:1.5.0@sha256:ab", "conduit", "1.5.0"),
    ],
)
def test_an_image_reference_splits_into_repository_and_tag(image, repo, tag):
    from conduit.drivers.docker import image_tag, repository

    assert (repository(image), image_tag(image)) == (repo, tag)
