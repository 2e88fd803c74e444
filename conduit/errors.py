"""The faults a user sees and the exit codes they end in: the lowest layer, so that the CLI's one
error boundary can name every fault without loading the modules (and Docker, pydantic) that raise them.

Exit codes: 0 ok, 1 error before any change, 2 invalid input, 3 failed and rolled back,
4 failed and could not roll back. Standard library only: `conduit --version` loads this module.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK, EXIT_ERROR, EXIT_INVALID, EXIT_ROLLED_BACK, EXIT_NOT_ROLLED_BACK = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    path: str
    message: str
    file: str | None = None  # the file that wrote the value, when it is not the spec's own (a base it extends)


class SpecError(Exception):
    """A spec that cannot be used; every problem names file, line, column and field."""

    def __init__(self, filename: str, problems: list[Problem]):
        self.filename = filename
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return located(self.filename, self.problems)


def located(filename: str, problems: list[Problem]) -> list[str]:
    """`file:line:col: field: message`, one line each, whatever the parser said."""
    out = []
    for p in problems:
        where = f"{p.file or filename}:{p.line}:{p.column}"
        message = " ".join(p.message.split())
        out.append(f"{where}: {p.path}: {message}" if p.path else f"{where}: {message}")
    return out


class PolicyError(Exception):
    """The policy file cannot be used; one line naming it."""


class NotASavedPlan(Exception):
    """The file cannot be applied as a saved plan; the message is one line, `code` the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(" ".join(message.split()))
        self.code = code


class DockerError(Exception):
    """The Docker daemon cannot be used; the message is one line saying why and what to do."""


class DockerDown(DockerError):
    """The Docker daemon does not answer at all: stopped, not installed, or not where the tool looks."""


class HostileEntry(Exception):
    """Something in a node's volume that no honest node leaves there; the message is one line."""

    def __init__(self, volume: str, name: str, what: str, node: str | None = None):
        self.volume, self.name, self.what, self.node = volume, name, what, node
        super().__init__(
            f"{self.who} planted {what} at {name} in its volume: it may be compromised; "
            "inspect the volume, then restore its key from a backup"
        )

    @property
    def who(self) -> str:
        return f"node {self.node}" if self.node else f"the node of volume {self.volume}"

    @property
    def alert(self) -> str:
        """The short text an operator's phone gets."""
        return f"{self.who} planted {self.what} ({self.name} in its volume): it may be compromised"


class KeyProblem(Exception):
    """A key operation that must not go ahead; the message is one line."""


class GitError(Exception):
    pass


class Locked(Exception):
    """Another apply holds the lock."""


class CompartmentProblem(Exception):
    """The compartment could not be made or is unusable; one line for the operator."""


class HostMoved(Exception):
    """The host is not as it was observed when a saved plan was made."""


class AlertError(Exception):
    """An alert that could not be sent; the message never holds the token."""
