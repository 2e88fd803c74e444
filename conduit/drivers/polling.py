"""Waiting for the host to get somewhere: look again with a pause that starts small and doubles,
never a fixed sleep that is too long when the host is quick and too short when it is slow."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

FIRST_PAUSE = 0.05  # between the first looks: most things are ready within a few tenths of a second
LONGEST_PAUSE = 1.0  # the pause doubles up to this: a slow start is not asked dozens of times a second


def pauses(longest: float = LONGEST_PAUSE) -> Iterator[float]:
    pause = min(FIRST_PAUSE, longest)
    while True:
        yield pause
        pause = min(pause * 2, longest)


def poll(check: Callable[[], str | None], timeout: float, longest: float = LONGEST_PAUSE) -> str | None:
    """Call `check` (None: there, else why not) until it answers None or `timeout` seconds passed
    since its first "not yet" (a first look that took long to answer still gets its wait); returns
    its last answer. `longest`: a lower ceiling for the pause where a look costs next to nothing."""
    reason = check()
    deadline, pause = time.monotonic() + timeout, pauses(longest)
    while reason is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            return reason
        time.sleep(min(next(pause), left))
        reason = check()
    return None
