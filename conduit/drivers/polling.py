"""Waiting for the host to get somewhere: look again with a pause that starts small and doubles,
never a fixed sleep that is too long when the host is quick and too short when it is slow."""

from __future__ import annotations

import time
from collections.abc import Iterator

FIRST_PAUSE = 0.05  # between the first looks: most things are ready within a few tenths of a second
LONGEST_PAUSE = 1.0  # the pause doubles up to this: a slow start is not asked dozens of times a second


def pauses(longest: float = LONGEST_PAUSE) -> Iterator[float]:
    pause = min(FIRST_PAUSE, longest)
    while True:
        yield pause
        pause = min(pause * 2, longest)


def retries(timeout: float, longest: float = LONGEST_PAUSE) -> Iterator[None]:
    """The looks again after a first "not yet": each after the next pause, until `timeout` seconds
    have passed since this began (a first look that took long to answer still gets its wait). The
    caller keeps its own loop and its own look, so no look is handed down the layers:

        reason = look()
        for _ in retries(timeout):
            if (reason := look()) is None:
                break

    `longest`: a lower ceiling for the pause where a look costs next to nothing."""
    deadline = time.monotonic() + timeout
    for pause in pauses(longest):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(pause, left))
        yield

