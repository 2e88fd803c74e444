"""The audit log: who did what to the host, and when (applies, tokens, the API's requests)."""

from __future__ import annotations

import getpass
import json
import os
import time
from contextlib import closing

from conduit.state.db import Store, guarded


class Audit(Store):
    @guarded("write the audit log")
    def record(self, event: str, detail: dict | None = None, user: str | None = None) -> None:
        """One audit row; `user` defaults to the account running this process (the API names its token)."""
        if user is None:
            try:
                user = getpass.getuser()
            except (KeyError, OSError):
                user = str(os.getuid())
        self.db.write("INSERT INTO audit (at, user, event, detail) VALUES (?, ?, ?, ?)", (time.time(), user, event, json.dumps(detail or {})))

    @guarded("read the audit log")
    def recent(self, limit: int = 100) -> list[dict]:
        """The newest `limit` audit rows, newest first."""
        with closing(self.db.connect()) as db:
            rows = db.execute("SELECT id, at, user, event, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": i, "at": at, "user": user, "event": event, "detail": json.loads(detail or "{}")} for i, at, user, event, detail in rows]
