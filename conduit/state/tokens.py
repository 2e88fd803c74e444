"""Who may use the agent's API (conduit serve): named tokens with a role, kept only as digests."""

from __future__ import annotations

import time
from contextlib import closing

from conduit.state.audit import Audit
from conduit.state.db import Database, Store, guarded


class Tokens(Store):
    def __init__(self, db: Database):
        super().__init__(db)
        self.audit = Audit(db)

    @guarded("record an API token")
    def add(self, name: str, role: str, digest: str) -> bool:
        """False when a token of that name exists already."""
        with closing(self.db.connect()) as db:
            if db.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
                return False
            db.execute("INSERT INTO api_tokens (name, role, digest, created) VALUES (?, ?, ?, ?)", (name, role, digest, time.time()))
        self.audit.record("token.create", {"name": name, "role": role})
        return True

    @guarded("read the API tokens")
    def all(self) -> list[tuple[str, str, float]]:
        """(name, role, created) of every token, by name."""
        with closing(self.db.connect()) as db:
            return db.execute("SELECT name, role, created FROM api_tokens ORDER BY name").fetchall()

    @guarded("read the API tokens")
    def by_digest(self, digest: str) -> tuple[str, str] | None:
        """(name, role) of the token with this digest, or None."""
        with closing(self.db.connect()) as db:
            row = db.execute("SELECT name, role FROM api_tokens WHERE digest = ?", (digest,)).fetchone()
        return (row[0], row[1]) if row else None

    @guarded("revoke an API token")
    def revoke(self, name: str) -> bool:
        """False when there is no token of that name."""
        with closing(self.db.connect()) as db:
            gone = db.execute("DELETE FROM api_tokens WHERE name = ?", (name,)).rowcount
        if gone:
            self.audit.record("token.revoke", {"name": name})
        return bool(gone)
