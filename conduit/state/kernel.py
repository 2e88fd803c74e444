"""The kernel's answers to sysctl writes: a write refused under on_refused: warn is remembered, so
the next plan holds that key (a no-op with a warning) instead of trying it again forever."""

from __future__ import annotations

import time
from contextlib import closing

from conduit.state.db import Store, guarded


class KernelAnswers(Store):
    @guarded("read the refused sysctl writes")
    def refused(self) -> dict[str, tuple[str, str]]:
        """{key: (value, the kernel's answer)} of the writes refused and not since accepted."""
        with closing(self.db.connect()) as db:
            return {key: (value, answer) for key, value, answer in db.execute("SELECT key, value, answer FROM sysctl_refused")}

    @guarded("record a sysctl write")
    def record(self, key: str, value: str, answer: str | None) -> None:
        """The kernel refused `value` for `key` with `answer`; None: it took it."""
        if answer is None:
            self.db.write("DELETE FROM sysctl_refused WHERE key = ?", (key,))
        else:
            self.db.write("INSERT OR REPLACE INTO sysctl_refused (key, value, answer, at) VALUES (?, ?, ?, ?)", (key, value, answer, time.time()))
