"""A host only the Docker SDK speaks to (ssh://, https://) is asked a node's log and whether a file is
in a container through the SDK's APIClient (conduit.drivers.dockerapi's container_log and
archive_status): here that client drives the private engine over its socket, and its answers are
the same as conduit's own client's for the same containers, in one request each."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from conduit.drivers.docker import CountingClient
from conduit.drivers.dockerapi import archive_status, container_log, not_found

pytestmark = pytest.mark.integration

STAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z ")
FRAME = bytes([1, 0, 0, 0])  # the start of a stdout frame of a log without a TTY, never in a log unframed


@pytest.fixture
def clients(docker_engine):
    """(conduit's own client, the SDK's APIClient) for the same private engine, counting into one."""
    client = CountingClient(docker_engine.host)
    return client, client.api, client.sdk()


def finished(docker_engine, docker_cleanup, image: str, tty: bool):
    """A node that writes its start-up lines on stdout and, two seconds later, its last on stderr."""
    container = docker_engine.client.containers.run(image, environment={"STANDIN_EXIT_AFTER": "2"}, tty=tty, detach=True,
                                                    name=docker_cleanup.name("tty" if tty else "plain"), labels=docker_cleanup.labels)
    assert container.wait(timeout=30)["StatusCode"] == 3
    return container


def seconds(line: bytes) -> float:
    whole, fraction = STAMP.match(line).groups()
    at = datetime.strptime(whole.decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return at + float(fraction or 0)


LIMIT = 1 << 20  # far above these logs: the whole log is read


@pytest.mark.parametrize("tty", [False, True], ids=["no-tty", "tty"])
def test_a_log_read_by_the_sdk_is_the_log_conduit_reads(docker_engine, docker_cleanup, standin_image, clients, tty):
    client, api, sdk = clients
    container = finished(docker_engine, docker_cleanup, standin_image, tty)
    full = container_log(api, container.id, tty, LIMIT)
    assert b"Starting Psiphon Conduit" in full and b"standin: exiting" in full  # stdout and stderr
    assert (FRAME in full, b"\r\n" in full) == (False, tty)  # unframed; a TTY ends its lines with \r\n
    assert full == container.logs()  # the SDK's own logs(), which inspects the container for its TTY

    stamped = container_log(api, container.id, tty, LIMIT, timestamps=True)
    lines = stamped.splitlines(keepends=True)
    assert all(STAMP.match(line) for line in lines) and len(lines) == len(full.splitlines())
    since = int(seconds(lines[0])) + 1  # after the start-up lines, before the last (two seconds later)
    later = b"".join(line for line in lines if seconds(line) >= since)
    assert later.endswith(lines[-1]) and not later.startswith(lines[0])

    asked = [{}, {"timestamps": True}, {"timestamps": True, "since": since}, {"since": since}, {"tail": 1}, {"tail": 2, "timestamps": True}]
    before = client.calls
    answers = [(container_log(api, container.id, tty, LIMIT, **how), container_log(sdk, container.id, tty, LIMIT, **how)) for how in asked]
    assert client.calls == before + 2 * len(asked)  # one request each: neither inspects the container
    assert [ours == theirs for ours, theirs in answers] == [True] * len(asked)
    assert [ours for ours, _ in answers[:3]] == [full, stamped, later]
    assert answers[4][0].strip().endswith(b"standin: exiting (STANDIN_EXIT_AFTER=2)")


def test_a_log_of_a_container_that_is_not_there_is_not_found_from_either(clients, docker_cleanup):
    _, api, sdk = clients
    for asking in (api, sdk):
        with pytest.raises(not_found()):
            container_log(asking, docker_cleanup.name("gone"), tty=False, limit=LIMIT)


def test_whether_a_path_is_in_a_container_is_the_same_answer_from_either(docker_engine, docker_cleanup, standin_image, clients):
    client, api, sdk = clients
    created = docker_engine.client.containers.create(standin_image, labels=docker_cleanup.labels)
    exited = finished(docker_engine, docker_cleanup, standin_image, tty=False)
    paths = ["/usr/local/bin/conduit", "/home/conduit/data", "/usr/local/bin/nothing", "/nothing/there"]
    for container in (created.id, exited.id, docker_cleanup.name("gone")):
        before = client.calls
        ours, theirs = [archive_status(api, container, p) for p in paths], [archive_status(sdk, container, p) for p in paths]
        assert client.calls == before + 2 * len(paths)  # a HEAD each, nothing copied
        assert ours == theirs, container
        assert ours == ([404] * 4 if "gone" in container else [200, 200, 404, 404])
