"""Shared fixtures: a private Docker daemon, the stand-in Conduit images, a private nginx,
a private image registry.

Availability policy: when a component cannot run here (dockerd or nginx missing or
failing to start, gcc or docker-registry missing), a test that needs it is skipped with the reason -
unless the environment variable CI is "true", in which case it fails.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
if str(_TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(_TESTS_DIR))

from harness import (  # noqa: E402
    DockerEngine,
    EngineUnavailable,
    NginxServer,
    NginxUnavailable,
    Registry,
    RegistryUnavailable,
    StandinBuildError,
    no_engine_starting,
    not_found,
    unavailable,
)

from tests.helpers import stand_in_policy  # noqa: E402

CLEANUP_LABEL = "test.conduit.cleanup"


# The whole suite (pytest with no paths: pyproject's testpaths) runs on SUITE_WORKERS pytest-xdist
# workers, each with its own private dockerd, registry and nginx: the integration tests mostly wait
# (containers, gates, timeouts), so more workers than cores pay. Named paths run in this one process,
# with no dockerd per worker to start; `-n N` or PYTEST_XDIST_AUTO_NUM_WORKERS chooses otherwise.
SUITE_WORKERS = 4


# The files whose tests keep one worker busy longest (the CLI property test's examples, the stand-in's
# conformance group) are handed out first: collected in path order they came after the integration
# tests, and one worker ran them alone at the end.
LONGEST_FIRST = ("tests/property/test_cli_properties.py", "tests/integration/test_standin_conformance.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        return next((i for i, path in enumerate(LONGEST_FIRST) if item.nodeid.startswith(path)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist reads it
    return SUITE_WORKERS if config.args_source == pytest.Config.ArgsSource.TESTPATHS else 0


# Every spec the tests load, in this process or in a `conduit` they start, meets this policy.
os.environ["CONDUIT_POLICY"] = stand_in_policy()

# The clusters' apply locks of runs with the real root go here, never to the host's /run/conduit.
os.environ["CONDUIT_LOCK_DIR"] = tempfile.mkdtemp(prefix="conduit-locks-")


# ---------------------------------------------------------------- docker engine

@pytest.fixture(scope="session")
def docker_engine():
    """A private dockerd for the whole session.

    Yields a harness.DockerEngine: ``.host`` ("unix:///tmp/cdk.../docker.sock"),
    ``.client`` (docker.DockerClient), ``.dir``, ``.log_path``, ``.bridge``,
    ``.subnet``, ``.build_standin(version)``.
    """
    engine = DockerEngine()
    try:
        engine.start()
    except (EngineUnavailable, ImportError) as exc:
        unavailable(f"private Docker daemon unavailable: {exc}")
    try:
        yield engine
    finally:
        engine.stop()


def _build(engine: DockerEngine, version: str | None, build: str = "official") -> str:
    for tool in ("gcc", "docker"):
        if not shutil.which(tool):
            unavailable(f"{not_found(tool)}: the stand-in Conduit image cannot be built")
    try:
        return engine.build_standin(version, build)
    except StandinBuildError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def standin_image(docker_engine) -> str:
    """Tag of the stand-in image speaking the 2.x CLI (2.0.0)."""
    return _build(docker_engine, "2.0.0")


@pytest.fixture(scope="session")
def standin_image_v1(docker_engine) -> str:
    """Tag of the stand-in image speaking the 1.x CLI (1.5.0)."""
    return _build(docker_engine, "1.5.0")


@pytest.fixture(scope="session")
def standin_image_factory(docker_engine):
    """build(version=None, build="official") -> tag of that stand-in profile (built once per session).

    Profiles: official 1.1.0, 1.2.0, 1.3.0, 1.4.0, 1.5.0, 2.0.0 and community (ssmirr)."""
    return lambda version=None, build="official": _build(docker_engine, version, build)


@pytest.fixture(scope="session")
def standin_image_community(docker_engine) -> str:
    """Tag of the stand-in image of the ssmirr community build (1.x flags, --geo, no conduit-monitor)."""
    return _build(docker_engine, None, "community")


@pytest.fixture
def published_ports(docker_engine):
    """Asked for by a test whose containers publish ports or that makes bridge networks: no private
    engine (another pytest worker's, a restart) starts while it runs (harness.no_engine_starting)."""
    with no_engine_starting():
        yield


class DockerCleanup:
    """Removes what a test created on the private engine.

    Everything that did not exist when the test started is removed at teardown
    (containers first, then networks, then volumes), plus anything carrying
    ``labels`` or passed to ``track()``. ``name(stem)`` gives unique names.
    """

    BUILTIN_NETWORKS = {"bridge", "host", "none"}

    def __init__(self, client, test_name: str):
        self.client = client
        self.token = secrets.token_hex(3)
        stem = re.sub(r"[^a-zA-Z0-9_.-]+", "-", test_name)[:40].strip("-") or "test"
        self.labels = {CLEANUP_LABEL: f"{stem}-{self.token}"}
        self._tracked: list[tuple[str, str]] = []
        self._containers = {c.id for c in client.containers.list(all=True)}
        self._networks = {n.id for n in client.networks.list()}
        self._volumes = {v.name for v in client.volumes.list()}

    def name(self, stem: str) -> str:
        return f"t-{stem}-{self.token}"

    def track(self, kind: str, name_or_id: str) -> str:
        """kind is "container", "network" or "volume"."""
        self._tracked.append((kind, name_or_id))
        return name_or_id

    def cleanup(self) -> None:
        c = self.client
        tracked = {(k, n) for k, n in self._tracked}
        label = self.labels[CLEANUP_LABEL]
        for container in c.containers.list(all=True):
            mine = (container.id not in self._containers
                    or container.labels.get(CLEANUP_LABEL) == label
                    or ("container", container.name) in tracked
                    or ("container", container.id) in tracked)
            if mine:
                try:
                    container.remove(force=True)
                except Exception:  # noqa: BLE001
                    pass
        for net in c.networks.list():
            if net.name in self.BUILTIN_NETWORKS:
                continue
            if (net.id not in self._networks or ("network", net.name) in tracked
                    or (net.attrs.get("Labels") or {}).get(CLEANUP_LABEL) == label):
                try:
                    net.remove()
                except Exception:  # noqa: BLE001
                    pass
        for vol in c.volumes.list():
            if (vol.name not in self._volumes or ("volume", vol.name) in tracked
                    or (vol.attrs.get("Labels") or {}).get(CLEANUP_LABEL) == label):
                try:
                    vol.remove(force=True)
                except Exception:  # noqa: BLE001
                    pass


@pytest.fixture
def docker_cleanup(docker_engine, request):
    """Function-scoped: yields a DockerCleanup (``.client``, ``.labels``, ``.name()``, ``.track()``)."""
    helper = DockerCleanup(docker_engine.client, request.node.name)
    try:
        yield helper
    finally:
        helper.cleanup()


@pytest.fixture(autouse=True)
def _cleanup_docker_objects(request):
    """Every test that uses the private engine gets docker_cleanup, asked for or not."""
    if "docker_engine" in request.fixturenames:
        request.getfixturevalue("docker_cleanup")
    yield


# ------------------------------------------------------------------- telegram

@pytest.fixture
def telegram_stub():
    """A local Bot API (tests/telegram_stub.py) on loopback, closed after the test."""
    from tests.telegram_stub import TelegramStub

    stub = TelegramStub()
    yield stub
    stub.close()


# ---------------------------------------------------------------------- nginx

@pytest.fixture
def nginx_server():
    """A private nginx with the stream module loaded (harness.NginxServer).

    Attributes: ``binary``, ``prefix``, ``main_conf``, ``pid_file``, ``error_log``,
    ``include_dir``; methods ``reload()``, ``test_config()``, ``add_main(text)``,
    ``write_include(name, text)``, ``master_pid()``.
    """
    yield from _started(NginxServer(), NginxUnavailable, "private nginx")


# ------------------------------------------------------------------- registry

@pytest.fixture(scope="session")
def registry():
    """A private docker-registry on 127.0.0.1 for the whole session (harness.Registry).

    Attributes: ``address`` ("127.0.0.1:PORT"), ``dir``, ``log_path``; push to it with
    harness.push_variant(engine, registry, repo, tag, base_image, env). The private
    engine pushes and pulls over plain HTTP: Docker trusts 127.0.0.0/8 as insecure.
    """
    yield from _started(Registry(), RegistryUnavailable, "private registry")


def _started(server, failure: type[Exception], what: str):
    """Start a server for a fixture and stop it after; one that cannot start is `unavailable`."""
    try:
        server.start()
    except failure as exc:
        unavailable(f"{what} unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()
