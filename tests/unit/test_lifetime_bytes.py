"""Lifetime byte totals kept in the state DB from gauges that restart at 0 with the node."""

from __future__ import annotations

from conduit.facts.lifetime import ByteReading, delta
from conduit.state.stores import open_state


def test_deltas_and_restarts():
    assert delta(None, ByteReading(100, 200, 5)) == (100, 200)  # first reading: this run's count
    assert delta(ByteReading(100, 200, 5), ByteReading(150, 260, 10)) == (50, 60)
    assert delta(ByteReading(150, 260, 10), ByteReading(40, 10, 2)) == (40, 10)  # a drop: a new run
    # a new run that already moved more than the last reading: only its uptime tells
    assert delta(ByteReading(150, 260, 100), ByteReading(500, 600, 3)) == (500, 600)
    assert delta(ByteReading(150, 260, None), ByteReading(500, 600, 3)) == (350, 340)


def test_totals_survive_restarts_and_reopening(tmp_path):
    state = open_state(tmp_path)
    assert state.lifetime.add_readings(1.0, {"n1": ByteReading(100, 1000, 10), "n2": ByteReading(5, 5, 1)}) == {"n1": (100, 1000), "n2": (5, 5)}
    assert state.lifetime.add_readings(2.0, {"n1": ByteReading(300, 1500, 20)})["n1"] == (300, 1500)
    assert state.lifetime.add_readings(3.0, {"n1": ByteReading(50, 70, 4)})["n1"] == (350, 1570)  # restarted
    assert state.lifetime.add_readings(4.0, {"n1": ByteReading(50, 70, 5)})["n1"] == (350, 1570)  # nothing moved
    assert open_state(tmp_path).lifetime.totals() == {"n1": (350, 1570), "n2": (5, 5)}
