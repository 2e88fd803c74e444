"""Where the host policy file is: a default path, or the file named by --policy, which the CLI
passes to everything it runs through an environment variable. Standard library only: the CLI's
root reads it to describe --policy, before any command loads the policy itself."""

from __future__ import annotations

import os

DEFAULT_PATH = "/etc/conduit/host.yaml"
ENV = "CONDUIT_POLICY"


def policy_path() -> str:
    return os.environ.get(ENV) or DEFAULT_PATH
