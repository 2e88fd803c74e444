"""Images: what each image answered when asked (by image ID), the image each node ran when a
generation succeeded (a rollback returns to it), the registry's last answer for a name, and the
new images whose canary failed (never taken again by themselves)."""

from __future__ import annotations

import time
from contextlib import closing
from dataclasses import dataclass

from conduit.spec.image import ImageFacts
from conduit.state.db import Store, guarded


@dataclass(frozen=True)
class NodeImage:
    image: str
    image_id: str
    digest: str | None
    version: str | None
    since: float = 0.0


class Images(Store):
    @guarded("read the image facts")
    def facts(self, image_id: str) -> ImageFacts | None:
        """The facts an image gave when it was asked, or None (never asked, or a record this version
        cannot read): an image ID never changes its answer."""
        with closing(self.db.connect()) as db:
            row = db.execute("SELECT facts FROM image_facts WHERE image_id = ?", (image_id,)).fetchone()
        try:
            return ImageFacts.from_json(row[0]) if row else None
        except (ValueError, TypeError, KeyError):
            return None

    @guarded("record image facts")
    def save_facts(self, image_id: str, facts: str) -> None:
        self.db.write("INSERT OR REPLACE INTO image_facts (image_id, facts, probed) VALUES (?, ?, ?)", (image_id, facts, time.time()))

    @guarded("record the nodes' images")
    def record_nodes(self, gen: int, rows: dict[str, NodeImage]) -> None:
        """What each node runs now that `gen` succeeded; `since` carries over while the image ID stays."""
        before = self.of_nodes()
        now = time.time()
        with closing(self.db.connect()) as db:
            for node, row in rows.items():
                old = before.get(node)
                since = old.since if old is not None and old.image_id == row.image_id else now
                db.execute(
                    "INSERT OR REPLACE INTO node_images (generation, node, image, image_id, digest, version, since) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (gen, node, row.image, row.image_id, row.digest, row.version, since),
                )

    @guarded("read the nodes' images")
    def of_nodes(self, gen: int | None = None) -> dict[str, NodeImage]:
        """{node: NodeImage} as generation `gen` left them (default: the latest generation that recorded any)."""
        with closing(self.db.connect()) as db:
            if gen is None:
                row = db.execute("SELECT MAX(generation) FROM node_images").fetchone()
                gen = row[0] if row else None
            rows = db.execute(
                "SELECT node, image, image_id, digest, version, since FROM node_images WHERE generation = ?", (gen,)
            ).fetchall()
        return {r[0]: NodeImage(*r[1:]) for r in rows}

    @guarded("read when the registry was asked")
    def last_check(self, image: str) -> tuple[float, str | None] | None:
        with closing(self.db.connect()) as db:
            row = db.execute("SELECT checked, digest FROM image_checks WHERE image = ?", (image,)).fetchone()
        return (row[0], row[1]) if row else None

    @guarded("read which tags the registry gave a digest for")
    def checked_names(self, digest: str) -> list[str]:
        """The image names the registry last answered with this digest, the most recent first."""
        with closing(self.db.connect()) as db:
            rows = db.execute("SELECT image FROM image_checks WHERE digest = ? ORDER BY checked DESC", (digest,)).fetchall()
        return [r[0] for r in rows]

    @guarded("record the registry's answer")
    def record_check(self, image: str, digest: str | None) -> None:
        self.db.write("INSERT OR REPLACE INTO image_checks (image, checked, digest) VALUES (?, ?, ?)", (image, time.time(), digest))

    @guarded("record a refused image")
    def refuse(self, image_id: str, image: str, gen: int | None, reason: str) -> None:
        self.db.write(
            "INSERT OR REPLACE INTO image_refused (image_id, image, generation, reason, at) VALUES (?, ?, ?, ?, ?)",
            (image_id, image, gen, reason, time.time()),
        )

    @guarded("read the refused images")
    def refused(self) -> dict[str, tuple[int | None, str]]:
        """{image ID: (generation, why)} of updates whose canary failed."""
        with closing(self.db.connect()) as db:
            rows = db.execute("SELECT image_id, generation, reason FROM image_refused").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}
