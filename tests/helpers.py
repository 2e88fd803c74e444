"""Small builders shared by the unit and property tests."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sys
import tempfile
from pathlib import Path

import yaml

from conduit.spec.profiles import HostFacts

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "cluster.yaml"

# A 2 vCPU / 4 GiB VPS, the size the example spec is written for.
SMALL_VPS = HostFacts(vcpus=2.0, memory=4 << 30, nic_mbps=1000, nofile_limit=20000, primary_interface="eth0")

# This checkout's CLI, not whatever `conduit` is installed on PATH.
CONDUIT = [sys.executable, "-m", "conduit"]


def cli_env() -> dict[str, str]:
    """The environment for CONDUIT: this checkout first on the module path, the stand-in's host policy."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("CONDUIT_POLICY", stand_in_policy())
    return env


@functools.cache
def stand_in_policy() -> str:
    """tests/fixtures/policy/tests.yaml as a host policy must be: a private copy, mode 0600. The
    defaults plus the stand-in images, loopback services and the scratch directories tests use."""
    path = Path(tempfile.mkdtemp(prefix="conduit-policy-")) / "host.yaml"
    path.write_text((ROOT / "tests" / "fixtures" / "policy" / "tests.yaml").read_text())
    path.chmod(0o600)
    return str(path)


def artifact(name: str) -> Path:
    """Where a test keeps what a person may want to look at afterwards: CONDUIT_TEST_ARTIFACTS,
    else test-artifacts/ at the repository root."""
    return Path(os.environ.get("CONDUIT_TEST_ARTIFACTS") or ROOT / "test-artifacts") / name


STANDIN_IMAGES = ["conduit-standin:*"]


def default_policy_with_standin(**more) -> str:
    """The default host policy a real host gets, plus only the stand-in images (and `more`
    top-level settings a test names, saying why), as a private 0600 file for CONDUIT_POLICY."""
    from conduit.spec.policy import HostPolicy

    data = HostPolicy().model_dump()
    data["images"] = [*data["images"], *STANDIN_IMAGES]
    data.update(more)
    path = Path(tempfile.mkdtemp(prefix="conduit-policy-")) / "host.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o600)
    return str(path)


# A base spec of one node, with no name: what a fleet's `base/node.yaml` holds (specs extend it).
BASE_NODE_SPEC = """\
apiVersion: conduit.psiphon.ca/v1alpha1
kind: ConduitCluster
spec:
  host: {vcpus: 2, memory: 4GiB, nic_mbps: 1000, profile: official}
  containers:
    count: 1
    image: ghcr.io/psiphon-inc/conduit/cli:2.0.0
  network: {mode: host}
  conduit:
    max_clients: 250
    bandwidth_mbps: 5
"""


def minimal(**spec) -> dict:
    return {
        "apiVersion": "conduit.psiphon.ca/v1alpha1",
        "kind": "ConduitCluster",
        "metadata": {"name": "test"},
        "spec": spec,
    }


def dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


@contextlib.contextmanager
def removed_afterwards(*files: Path):
    """Files a test makes in a host directory others share (the default secrets directory):
    refused if one is already there, removed afterwards with the directories made for them."""
    files = tuple(Path(f) for f in files)
    taken = [str(f) for f in files if f.exists()]
    if taken:
        raise AssertionError(f"{', '.join(taken)} already exist; the test will not overwrite them")
    # Tests in other workers may be writing into the same directories: each holds a shared lock while
    # it runs, and only one that is alone (the exclusive lock taken at once) removes the directories.
    with open(os.path.join(tempfile.gettempdir(), "cdk-host-dirs.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        made = sorted({d for f in files for d in (f.parent, *f.parent.parents) if not d.exists()}, key=lambda d: -len(d.parts))
        try:
            yield files
        finally:
            for f in files:
                f.unlink(missing_ok=True)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                made = []  # another test writes there still: the directories stay
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty: whatever else came meanwhile stays


def offline_plan(doc):
    """The plan against an empty host (`conduit plan --offline`)."""
    from conduit.engine.intent import Apply
    from conduit.engine.planning import nothing_observed, plan

    return plan(Apply(), doc, nothing_observed())


def plan_between(old, new):
    """The plan from `old`, as if it were applied exactly, to `new` (`conduit plan-diff`)."""
    from conduit.engine.intent import Apply
    from conduit.engine.planning import as_applied, plan

    return plan(Apply(), new, as_applied(old, new))


def poll(check, timeout: float):
    """The loop a waiter writes over conduit.drivers.polling.retries with its own look: `check`
    answers None (there) or why not; returns its last answer."""
    from conduit.drivers.polling import retries

    reason = check()
    if reason is not None:
        for _ in retries(timeout):
            if (reason := check()) is None:
                break
    return reason
