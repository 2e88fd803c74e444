"""`conduit status` asks the Docker daemon as often for 40 nodes as for 8 (its drift check reads the
same container list, and the image and volume answers kept while no event can have changed them),
its drift check says what `conduit plan` says, and its restart counts are the engine's own, also
when the engine's buffer of past events overflowed."""

from __future__ import annotations

import io
import json
import os
import signal

import pytest

from harness import free_port_block
from harness import wait_for
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration


def status(cluster: Cluster, *extra: str) -> dict:
    done = cluster.run("status", "--json", *extra, str(cluster.spec))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def restarts(cluster: Cluster) -> dict[str, int]:
    return {r["name"]: r["restarts"] for r in status(cluster, "--no-drift")["containers"]}


def test_status_makes_as_many_docker_calls_for_40_nodes_as_for_8(tmp_path, docker_engine, standin_image, docker_cleanup):
    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("sc"), free_port_block(40))
    calls = {}
    for count in (8, 40):
        cluster.write(count=count)
        cluster.spec.write_text(cluster.spec.read_text().replace("cpus: 0.2", "cpus: 0.05"))  # 40 fit the host's 4
        result = cluster.apply()
        assert result.returncode == 0, result.stdout + result.stderr
        first = status(cluster)  # the new containers are inspected once, the image and the volumes asked; all kept
        assert first["api_calls"] > 3
        alone, with_drift = status(cluster, "--no-drift"), status(cluster)
        assert alone["totals"]["up"] == count and with_drift["drift"] == [] and with_drift["pending"] == 0
        assert {r["restarts"] for r in alone["containers"]} == {0}
        calls[count] = (alone["api_calls"], with_drift["api_calls"])
    assert calls[8] == calls[40]
    # the list and the events; the drift check reads status's own list and the answers kept
    assert calls[8] == (2, 2)


def plan_says(cluster: Cluster) -> tuple[list[str], int]:
    """What `conduit plan` (every answer asked fresh) calls drift, and how many changes it has."""
    done = cluster.run("plan", "--json", str(cluster.spec))
    assert done.returncode == 0, done.stdout + done.stderr
    changes = [s for s in json.loads(done.stdout)["steps"] if s["action"] != "no-op"]
    return [f"{s['kind']} {s['id']}" for s in changes if s["reason"] == "drift"], len(changes)


def status_says(cluster: Cluster) -> tuple[list[str], int]:
    data = status(cluster)
    return data["drift"], data["pending"]


def steady(cluster: Cluster) -> None:
    """Status twice: the second asks only the list and the events (the answers are kept)."""
    status(cluster)
    assert status(cluster)["api_calls"] == 2


def rename_often(docker_engine, image: str, name: str, times: int) -> None:
    """`times` engine events about a container of no cluster's (and no image or volume)."""
    api = docker_engine.client.api
    made = api.create_container(image, name=name)["Id"]
    for i in range(times):
        api.rename(made, f"{name}-{i % 2}")
    api.remove_container(made, force=True)


def test_status_drift_check_says_what_plan_says_after_the_tag_or_the_volumes_moved(tmp_path, docker_engine, standin_image, docker_cleanup):
    api = docker_engine.client.api
    repo, tag = "conduit-standin", docker_cleanup.name("sd")  # a tag of its own, which the host policy allows
    api.tag(standin_image, repo, tag)
    other = docker_engine.client.images.build(fileobj=io.BytesIO(f"FROM {standin_image}\nLABEL moved=yes\n".encode()), rm=True)[0].id
    try:
        cluster = Cluster(tmp_path, docker_engine, f"{repo}:{tag}", docker_cleanup.name("sd"), free_port_block(3))
        cluster.write(count=3)
        assert cluster.apply().returncode == 0
        steady(cluster)
        assert status_says(cluster) == plan_says(cluster) == ([], 0)

        api.tag(other, repo, tag)  # the tag moved: a `tag` event of the other image
        moved = plan_says(cluster)
        assert moved[1] > 0 and status_says(cluster) == moved
        api.tag(standin_image, repo, tag)
        assert status_says(cluster) == plan_says(cluster) == ([], 0)

        steady(cluster)
        node = docker_engine.client.containers.get(f"{cluster.prefix}-3")
        volume = next(m["Name"] for m in node.attrs["Mounts"] if m["Type"] == "volume")
        node.remove(force=True)
        api.remove_volume(volume)  # a volume destroyed: the plan makes it again
        gone = plan_says(cluster)
        assert gone[1] == 2 and status_says(cluster) == gone  # the node, and its volume
        steady(cluster)
        api.create_volume(volume)  # made by hand: the plan takes it as the node's
        assert status_says(cluster) == plan_says(cluster) == ([], 1)

        assert cluster.apply().returncode == 0
        steady(cluster)
        rename_often(docker_engine, standin_image, docker_cleanup.name("sd-other"), 3)
        assert status(cluster)["api_calls"] == 2  # events of no kept answer's cost nothing
        rename_often(docker_engine, standin_image, docker_cleanup.name("sd-other"), 300)  # the buffer holds 256
        done = cluster.run("--debug", "status", "--json", str(cluster.spec))
        assert json.loads(done.stdout)["api_calls"] == 2 + 3 + 2  # every node, the image and the volumes asked again
        assert "answers_asked_again" in done.stderr
    finally:
        for image in (f"{repo}:{tag}", other):
            api.remove_image(image, force=True)


def crash(docker_engine, name: str, times: int) -> None:
    """Kill the node's process from the host `times` times: it dies on its own, and the engine's
    restart policy brings it back each time."""
    container = docker_engine.client.containers.get(name)
    for _ in range(times):
        container.reload()
        count = container.attrs["RestartCount"]
        os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
        wait_for(lambda: container.reload() or (container.attrs["RestartCount"] == count + 1 and container.status == "running"),
                 timeout=30, interval=0.2, message="the engine restarting the node")  # fmt: skip


def flood_events(docker_engine, count: int) -> None:
    """`count` engine events about nothing of the cluster's: a volume made and removed, over and over."""
    api = docker_engine.client.api
    for i in range(count // 2):
        api.create_volume(f"status-calls-flood-{i}")
        api.remove_volume(f"status-calls-flood-{i}")


def test_a_node_the_engine_restarted_shows_the_engines_exact_restart_count(tmp_path, docker_engine, standin_image, docker_cleanup):
    cluster = Cluster(tmp_path, docker_engine, standin_image, docker_cleanup.name("sr"), free_port_block(3))
    cluster.write(count=3)
    assert cluster.apply().returncode == 0
    crashing, steady = f"{cluster.prefix}-1", f"{cluster.prefix}-2"
    assert restarts(cluster)[crashing] == 0  # looked at once: every node is kept

    crash(docker_engine, crashing, 2)  # its events are still in the engine's buffer
    done = cluster.run("--debug", "status", "--json", "--no-drift", str(cluster.spec))
    data = json.loads(done.stdout)
    assert {r["name"]: r["restarts"] for r in data["containers"]} == {crashing: 2, steady: 0, f"{cluster.prefix}-3": 0}
    assert data["api_calls"] == 3  # the list, the events, and the crashed node alone inspected again
    assert "it has events since the last look" in done.stderr

    crash(docker_engine, crashing, 3)
    flood_events(docker_engine, 600)  # the buffer holds 256: the crashes and the last look's anchor are gone
    done = cluster.run("--debug", "status", "--json", "--no-drift", str(cluster.spec))
    data = json.loads(done.stdout)
    rows = {r["name"]: r for r in data["containers"]}
    assert docker_engine.client.containers.get(crashing).attrs["RestartCount"] == 5
    assert (rows[crashing]["restarts"], rows[steady]["restarts"]) == (5, 0)
    assert data["api_calls"] == 2 + 3  # every node asked again, and said so
    assert "events since the last look may be lost" in done.stderr

    container = docker_engine.client.containers.get(crashing)
    container.stop(timeout=5)
    container.start()  # started by hand: the engine counts again from 0
    wait_for(lambda: status(cluster, "--no-drift")["totals"]["up"] == 3, timeout=20, interval=0.5, message="the node serving again")
    assert restarts(cluster)[crashing] == 0
