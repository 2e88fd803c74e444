"""A transcript of a person's session with the `conduit` command, for the journey tests.

Each command runs as a subprocess of this checkout's CLI against the private engine; the
transcript shows what the person typed (`$ conduit plan cluster.yaml`: the harness's own
--docker-host/--state-dir/--root and the host policy are named once, in the header) and
everything the command printed, with its exit code. It is saved under the test artifacts as
journeys/<name>.txt, also when the journey fails, so that a person can read it as a new
user would.
"""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import yaml

from tests.helpers import CONDUIT, artifact, cli_env

# What /etc/conduit/host.yaml allows when it is absent (conduit/spec/policy.py, examples/host.yaml).
DEFAULT_IMAGES = ["ghcr.io/psiphon-inc/conduit/*", "ghcr.io/ssmirr/conduit/*"]


def host_policy(**extra) -> str:
    """A host policy as root installs it (0600 in a 0700 directory): the default image patterns plus
    the stand-in images, and nothing else unless a journey names it in `extra`."""
    directory = Path(tempfile.mkdtemp(prefix="conduit-host-"))
    directory.chmod(0o700)
    path = directory / "host.yaml"
    path.write_text(yaml.safe_dump({"images": [*DEFAULT_IMAGES, "conduit-standin:*"], **extra}, sort_keys=False))
    path.chmod(0o600)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700 and directory.stat().st_uid == os.geteuid()
    return str(path)


class Background:
    """A command left running; its output lines are gathered as they come."""

    def __init__(self, process: subprocess.Popen, args: tuple[str, ...]):
        self.process, self.args = process, args
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=self._gather, args=(pipe, lines), daemon=True)
                        for pipe, lines in ((process.stdout, self.out), (process.stderr, self.err))]  # fmt: skip
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _gather(pipe, lines: list[str]) -> None:
        for line in pipe:
            lines.append(line.rstrip("\n"))

    def stdout(self) -> str:
        return "\n".join(self.out)

    def stderr(self) -> str:
        return "\n".join(self.err)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for reader in self.readers:
            reader.join(timeout=10)


class Journey:
    """`conduit` commands run in `cwd` against one engine, state dir and host root, recorded."""

    def __init__(self, name: str, cwd: Path, engine, policy: str, state: Path | None = None, root: Path | None = None):
        self.name, self.cwd, self.policy = name, cwd, policy
        self.state = state or cwd / "state"
        self.root = root or cwd / "root"
        self.root.mkdir(exist_ok=True)
        self.hidden = ["--docker-host", engine.host, "--state-dir", str(self.state), "--root", str(self.root)]
        self.lines = [
            f"# journey: {name}",
            f"# every `conduit` below also gets {shlex.join(self.hidden)}",
            f"# host policy ({policy}):",
            *(f"#   {line}" for line in Path(policy).read_text().splitlines()),
            "",
        ]
        self.background: list[Background] = []
        self.failed: list[str] = []

    def env(self) -> dict[str, str]:
        return dict(cli_env(), CONDUIT_POLICY=self.policy, COLUMNS="120")

    def argv(self, args: tuple[str, ...]) -> list[str]:
        return [*CONDUIT, *self.hidden, *args]

    def note(self, text: str) -> None:
        """A line of what the person does outside conduit (edits a file, starts a squatter)."""
        self.lines.extend(f"# {line}" for line in text.splitlines())

    def check(self, ok: bool, what: str) -> None:
        """A check that lets the journey go on (so one fault does not hide the next); verdict() fails on any."""
        if not ok:
            self.failed.append(what)
            self.note(f"CHECK FAILED: {what}")

    def verdict(self) -> None:
        assert not self.failed, "; ".join(self.failed)

    def run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        result = subprocess.run(self.argv(args), cwd=self.cwd, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL, env=self.env())  # fmt: skip
        self.record(args, result.stdout, result.stderr, result.returncode)
        return result

    def record(self, args: tuple[str, ...] | list[str], stdout: str, stderr: str, code: int | str) -> None:
        self.lines.append(f"$ conduit {shlex.join(args)}")
        self.record_output(stdout, stderr, code)

    def record_output(self, stdout: str, stderr: str, code: int | str) -> None:
        self.lines.extend(stdout.rstrip("\n").splitlines())
        self.lines.extend(f"[stderr] {line}" for line in stderr.rstrip("\n").splitlines())
        self.lines.extend([f"[exit {code}]", ""])

    def start(self, *args: str) -> Background:
        """A long-running command (serve, watch); stop() records what it printed."""
        process = subprocess.Popen(self.argv(args), cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True, env=self.env())  # fmt: skip
        running = Background(process, args)
        self.background.append(running)
        self.lines.extend([f"$ conduit {shlex.join(args)} &", "[running in the background; its output is shown when it stops]", ""])
        return running

    def stop(self, running: Background) -> Background:
        """SIGTERM, as Ctrl-C or systemd would; what it printed goes to the transcript."""
        running.stop()
        self.background.remove(running)
        self.lines.append(f"# Ctrl-C (SIGTERM) to `conduit {shlex.join(running.args)}`; what it printed while it ran:")
        self.record_output(running.stdout(), running.stderr(), running.process.returncode)
        return running

    def save(self) -> Path:
        for process in list(self.background):
            self.stop(process)
        path = artifact(f"journeys/{self.name}.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")
        return path
