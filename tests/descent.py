"""Run a `conduit` command under a profiler that records every time a layer of conduit (a package:
conduit.cli, conduit.engine, conduit.state, ...) is called again while one of its frames waits on a
lower layer's work: a call back up the layers (a callback, a lambda handed down).
Usage: python -m tests.descent OUT.json -- conduit-args...

The shadow stack holds conduit layers only, consecutive frames of one layer collapsed (a layer's
modules call each other freely, decorators included); calls into third-party code (click, the
Docker SDK, the standard library) are transparent."""

from __future__ import annotations

import json
import sys
import threading


class Descent:
    def __init__(self):
        self.chain: list[list] = []  # [layer, depth] with consecutive frames of one layer collapsed
        self.frames: list[str | None] = []  # per frame: its layer when it is a conduit frame
        self.reentries: dict[str, int] = {}
        self.thread = threading.get_ident()

    def __call__(self, frame, event, arg):
        if threading.get_ident() != self.thread or event not in ("call", "return"):
            return
        name = frame.f_globals.get("__name__", "")
        mine = ".".join(name.split(".")[:2]) if name.startswith("conduit.") else None
        if event == "call":
            self.frames.append(mine)
            if mine is None:
                return
            if self.chain and self.chain[-1][0] == mine:
                self.chain[-1][1] += 1
                return
            if any(module == mine for module, _ in self.chain):
                path = " > ".join(module for module, _ in self.chain) + f" > {mine}"
                self.reentries[path] = self.reentries.get(path, 0) + 1
            self.chain.append([mine, 1])
            return
        if not self.frames:
            return
        if self.frames.pop() is None or not self.chain:
            return
        self.chain[-1][1] -= 1
        if self.chain[-1][1] == 0:
            self.chain.pop()


def main() -> int:
    out, argv = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
    from conduit.cli.root import main as conduit

    descent = Descent()
    code = 0
    sys.setprofile(descent)
    try:
        conduit.main(args=argv, prog_name="conduit", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.setprofile(None)
    with open(out, "w") as f:
        json.dump({"exit": code, "reentries": descent.reentries}, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
