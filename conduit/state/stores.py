"""The stores of one state directory, over its one database: for a caller that needs several."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conduit.state.audit import Audit
from conduit.state.db import Database
from conduit.state.history import History
from conduit.state.images import Images
from conduit.state.kernel import KernelAnswers
from conduit.state.lifetime import LifetimeBytes
from conduit.state.samples import TrackerSamples
from conduit.state.timeline import Timeline
from conduit.state.tokens import Tokens


@dataclass(frozen=True)
class Stores:
    db: Database
    history: History
    audit: Audit
    tokens: Tokens
    images: Images
    kernel: KernelAnswers
    samples: TrackerSamples
    lifetime: LifetimeBytes
    timeline: Timeline

    @classmethod
    def on(cls, db: Database) -> Stores:
        return cls(db, History(db), Audit(db), Tokens(db), Images(db), KernelAnswers(db), TrackerSamples(db), LifetimeBytes(db), Timeline(db))


def open_state(state_dir: Path) -> Stores:
    """The stores of `state_dir`, its database opened (made, checked, repaired) to write. Raises StateError."""
    return Stores.on(Database(state_dir))


def read_state(state_dir: Path) -> Stores | None:
    """The stores for a command that only reads: None when there is no database yet; read-only when
    the directory cannot be written (see Database.reader). Raises StateError."""
    db = Database.reader(state_dir)
    return None if db is None else Stores.on(db)
