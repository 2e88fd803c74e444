"""Waiting for the host: looks again with a pause that starts small and doubles to a ceiling."""

from __future__ import annotations

import itertools

from conduit.drivers.polling import FIRST_PAUSE, LONGEST_PAUSE, pauses
from tests.helpers import poll  # the loop over retries every waiter writes


def test_the_pause_starts_small_and_doubles_up_to_its_ceiling():
    seen = list(itertools.islice(pauses(), 8))
    assert seen[0] == FIRST_PAUSE and seen[-1] == LONGEST_PAUSE
    assert all(b == min(a * 2, LONGEST_PAUSE) for a, b in itertools.pairwise(seen))


def test_poll_returns_once_the_check_passes_and_asks_no_more():
    answers = iter(["not yet", "still not", None, "never asked"])
    asked = []

    def check():
        asked.append(1)
        return next(answers)

    assert poll(check, timeout=30) is None
    assert len(asked) == 3


def test_poll_gives_the_last_reason_at_the_timeout():
    count = itertools.count(1)
    assert poll(lambda: f"look {next(count)}", timeout=0) == "look 1"
    reason = poll(lambda: f"look {next(count)}", timeout=0.2)
    assert reason.startswith("look ") and int(reason.split()[1]) > 2


def test_a_lower_ceiling_caps_the_pause_from_the_start():
    assert list(itertools.islice(pauses(0.1), 4)) == [FIRST_PAUSE, 0.1, 0.1, 0.1]
    assert list(itertools.islice(pauses(FIRST_PAUSE / 5), 2)) == [FIRST_PAUSE / 5] * 2
