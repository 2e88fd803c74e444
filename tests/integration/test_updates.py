"""Image updates against a real local registry (Debian's docker-registry) and the private engine:
a new digest behind one tag, canary first, judged by client counts, rolled back by digest."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import docker.errors
import pytest
from click.testing import CliRunner

from conduit.cli.root import main
from conduit.execute import canary
from conduit.state.stores import open_state
from harness import free_port_block, push_variant, wait_for
from tests.helpers import cli_env
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration

COUNT = 3


@pytest.fixture
def tag(registry, docker_cleanup):
    """A tag of its own in the private registry: pushing to it moves it."""
    return f"{registry.address}/{docker_cleanup.name('up')}:stable"


@pytest.fixture
def cluster(tmp_path, docker_engine, docker_cleanup, tag):
    return Cluster(tmp_path, docker_engine, tag, docker_cleanup.name("u"), free_port_block(COUNT + 2))


def push(docker_engine, registry, tag: str, base: str, keep: bool = False, **env: str) -> str:
    """Push a build of `base` (with `env`) under `tag`; its digest. The local copy is removed, so
    the engine only has what it pulls from the registry, as on a real host. `keep`: the host has
    it under its tag already (as after `docker pull`), so a new host's first plan can ask it
    which CLI it speaks (an unversioned tag says nothing until the image is here)."""
    repo_tag = tag.split("/", 1)[1]
    repo, name = repo_tag.rsplit(":", 1)
    digest = push_variant(docker_engine, registry, repo, name, base, env=env)
    if not keep:
        docker_engine.client.images.remove(tag, noprune=False)
    return digest


def image_ids(cluster: Cluster) -> dict[str, str]:
    client = cluster.engine.client
    return {c.name: c.attrs["Image"] for c in client.containers.list(all=True) if c.name.startswith(cluster.prefix)}


def container_ids(cluster: Cluster) -> dict[str, str]:
    client = cluster.engine.client
    return {c.name: c.id for c in client.containers.list(all=True) if c.name.startswith(cluster.prefix)}


def image_id_of(docker_engine, tag: str, digest: str) -> str:
    return docker_engine.client.images.get(f"{tag.rsplit(':', 1)[0]}@{digest}").id


def on_host(docker_engine, tag: str, digest: str) -> bool:
    try:
        image_id_of(docker_engine, tag, digest)
    except docker.errors.ImageNotFound:
        return False
    return True


def flat(result) -> str:
    return " ".join((result.stdout + result.stderr).split())  # rich wraps long lines


def journal(cluster: Cluster, gen: int) -> list[tuple[str, str, str]]:
    """(action, kind, id) of each step started in generation `gen`, in order."""
    return [(row[3], row[1], row[2]) for row in open_state(cluster.state).history.journal(gen) if row[4] == "started"]


def node(cluster: Cluster, i: int) -> str:
    return f"{cluster.prefix}-{i}"


def settled(cluster: Cluster) -> None:
    wait_for(lambda: all(s == "running" for s in cluster.names().values()), timeout=30, message="nodes running")


def test_a_new_digest_shows_in_plan_and_update_moves_the_canary_first(cluster, docker_engine, registry, tag, standin_image):
    first = push(docker_engine, registry, tag, standin_image, keep=True, STANDIN_CLIENTS="5")
    cluster.write(count=COUNT, updates={"policy": "report", "analysis_minutes": 1})
    applied = cluster.apply()
    assert applied.returncode == 0, applied.stdout + applied.stderr
    old_id = image_id_of(docker_engine, tag, first)
    assert set(image_ids(cluster).values()) == {old_id}
    keys = cluster.keys()

    second = push(docker_engine, registry, tag, standin_image, STANDIN_CLIENTS="5")
    planned = cluster.run("plan", str(cluster.spec))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "Image update:" in planned.stdout and second[:19] in planned.stdout and first[:19] in planned.stdout
    assert f"{second[:19]} (its version is known once pulled)" in planned.stdout
    assert "not taken: updates.policy is report" in planned.stdout
    assert "No changes" in planned.stdout, planned.stdout  # under report the nodes stay where they are
    assert not on_host(docker_engine, tag, second)  # a plan reads the registry, it pulls nothing

    updated = cluster.run("update", "--auto-approve", str(cluster.spec))
    assert updated.returncode == 0, updated.stdout + updated.stderr
    new_id = image_id_of(docker_engine, tag, second)
    assert set(image_ids(cluster).values()) == {new_id}
    gen = cluster.generations()[-1][0]
    by_digest = f"{tag.rsplit(':', 1)[0]}@{second}"
    assert journal(cluster, gen)[:2] == [("pull", "image", by_digest), ("probe", "image", by_digest)]
    assert open_state(cluster.state).images.facts(new_id).describe() == "official 2.0.0"  # what the probe step learned
    steps = [s for s in journal(cluster, gen) if s[1] in ("container", "canary")]
    assert steps == [
        ("measure", "canary", node(cluster, 1)),
        ("replace", "container", node(cluster, 1)),
        ("judge", "canary", node(cluster, 1)),
        ("replace", "container", node(cluster, 2)),
        ("replace", "container", node(cluster, 3)),
    ]
    assert cluster.keys() == keys
    recorded = open_state(cluster.state).images.of_nodes()
    assert {r.digest for r in recorded.values()} == {second} and {r.image_id for r in recorded.values()} == {new_id}
    status = cluster.run("status", "--json", str(cluster.spec))
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["containers"]
    assert {r["digest"] for r in rows} == {second} and {r["image_id"] for r in rows} == {new_id}
    assert all(r["version"] == "official 2.0.0" and r["image_since"] for r in rows)
    again = cluster.run("plan", str(cluster.spec))
    assert again.returncode == 0 and "No changes" in again.stdout and "Image update:" not in again.stdout, again.stdout


def test_an_image_that_exits_at_start_is_rolled_back_after_the_canary(cluster, docker_engine, registry, tag, standin_image):
    first = push(docker_engine, registry, tag, standin_image, keep=True)
    cluster.write(count=COUNT, updates={"policy": "auto"})
    assert cluster.apply().returncode == 0
    keys, before = cluster.keys(), container_ids(cluster)

    push(docker_engine, registry, tag, standin_image, STANDIN_EXIT_AFTER="0")
    applied = cluster.apply()
    assert applied.returncode == 3, applied.stdout + applied.stderr
    settled(cluster)
    old_id = image_id_of(docker_engine, tag, first)
    assert set(image_ids(cluster).values()) == {old_id}
    after = container_ids(cluster)
    # The other nodes were never touched: the same containers, never stopped.
    assert {n: after[n] for n in (node(cluster, 2), node(cluster, 3))} == {n: before[n] for n in (node(cluster, 2), node(cluster, 3))}
    assert cluster.keys() == keys
    gen = cluster.generations()[-1]
    assert gen[1] == "rolled_back"
    touched = {s[2] for s in journal(cluster, gen[0]) if s[1] == "container"}
    assert touched == {node(cluster, 1)}
    # Auto updates do not try the same image again by themselves.
    again = cluster.run("plan", str(cluster.spec))
    assert "not taken: its canary failed" in again.stdout and "No changes" in again.stdout, again.stdout


class FakeClock(canary.Clock):
    """An analysis window that passes at once: each sleep moves time on."""

    def __init__(self):
        self.t = 0.0
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        self.slept += seconds
        time.sleep(0.01)


def test_a_canary_far_below_its_baseline_is_rolled_back_after_the_analysis_window(
    cluster, docker_engine, registry, tag, standin_image, monkeypatch
):
    first = push(docker_engine, registry, tag, standin_image, keep=True, STANDIN_CLIENTS="40")
    # ten minutes of the fake clock: each of its 5 s polls scrapes the canary for real
    cluster.write(count=COUNT, updates={"policy": "report", "analysis_minutes": 10, "min_clients_ratio": 0.5})
    assert cluster.apply().returncode == 0
    keys, before = cluster.keys(), container_ids(cluster)

    push(docker_engine, registry, tag, standin_image, STANDIN_CLIENTS="2")
    clock = FakeClock()
    monkeypatch.setattr(canary, "CLOCK", clock)
    args = cluster.argv("update", "--auto-approve", str(cluster.spec))[3:]  # in this process, for the clock
    result = CliRunner().invoke(main, args, env=cli_env(), catch_exceptions=False)
    assert result.exit_code == 3, result.output
    assert "did not win back its clients within 600 s" in result.output
    assert f"{node(cluster, 1)} has 2 clients, needs 20 of the 40" in result.output
    assert clock.slept >= 600  # the whole window went by
    settled(cluster)
    assert set(image_ids(cluster).values()) == {image_id_of(docker_engine, tag, first)}
    after = container_ids(cluster)
    assert all(after[node(cluster, i)] == before[node(cluster, i)] for i in (2, 3))
    assert cluster.keys() == keys


def test_watch_with_the_auto_policy_rolls_a_new_digest_out_canary_first(cluster, docker_engine, registry, tag, standin_image):
    push(docker_engine, registry, tag, standin_image, keep=True, STANDIN_CLIENTS="3")
    cluster.write(count=COUNT, updates={"policy": "auto", "analysis_minutes": 1})
    assert cluster.apply().returncode == 0
    keys = cluster.keys()
    second = push(docker_engine, registry, tag, standin_image, STANDIN_CLIENTS="3")
    watch = subprocess.Popen(cluster.argv("watch", str(cluster.spec), "--interval", "5"), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=cli_env())
    try:
        # The engine has the new image only once the watch has downloaded it.
        wait_for(lambda: set(image_ids(cluster).values()) == {image_id_of(docker_engine, tag, second)}
                 and cluster.generations()[-1][1] == "succeeded",
                 timeout=120, interval=0.5, message="every node on the new digest")
    finally:
        watch.terminate()
        output = watch.communicate(timeout=60)[0]
    gen = cluster.generations()[-1][0]
    order = [s[2] for s in journal(cluster, gen) if s[1] in ("container", "canary")]
    assert order[:3] == [node(cluster, 1)] * 3, output  # measure, replace, judge the canary before the rest
    assert cluster.keys() == keys


def test_a_1x_to_2_0_update_changes_the_flags_and_passes_its_gates(cluster, docker_engine, registry, tag, standin_image, standin_image_v1):
    push(docker_engine, registry, tag, standin_image_v1, keep=True)
    cluster.write(count=2, updates={"policy": "report", "analysis_minutes": 1})
    assert cluster.apply().returncode == 0
    # 1.x writes its stats file when asked; 2.0 has no --stats-file and exits on it (CONDUIT-FACTS: 2.0 flags).
    assert "--stats-file" in cluster.command_of(node(cluster, 1))
    keys = cluster.keys()
    second = push(docker_engine, registry, tag, standin_image)
    planned = cluster.run("update", "--check", str(cluster.spec))
    assert planned.returncode == 2, planned.stdout + planned.stderr
    assert "(official 1.5.0) ->" in planned.stdout and "(its version is known once pulled)" in planned.stdout
    assert not on_host(docker_engine, tag, second)  # a check pulls nothing
    before, gens = container_ids(cluster), cluster.generations()
    # The tag says nothing of its version: the nodes are planned as what their image said (1.5.0);
    # the pulled image says 2.0.0, so the apply stops before any node is touched.
    refused = cluster.run("update", "--auto-approve", str(cluster.spec))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "the new image speaks official 2.0.0, not official 1.5.0 that the plan was rendered for" in flat(refused)
    assert "run plan again" in flat(refused)
    assert container_ids(cluster) == before and cluster.generations() == gens and on_host(docker_engine, tag, second)
    checked = cluster.run("update", "--check", str(cluster.spec))
    assert checked.returncode == 2 and "(official 1.5.0) ->" in checked.stdout and f"{second[:19]} (official 2.0.0)" in checked.stdout
    updated = cluster.run("update", "--auto-approve", str(cluster.spec))
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "~ command:" in updated.stdout  # the plan shows the flags follow the new CLI
    for i in (1, 2):
        command = cluster.command_of(node(cluster, i))
        assert "--stats-file" not in command and command[:3] == ["start", "-m", "40"]
    assert cluster.keys() == keys


def test_a_version_range_follows_the_newest_tag_inside_it(registry, docker_engine, docker_cleanup, tmp_path, standin_image):
    """updates.versions: 2.0.0, 2.0.1 and 3.0.0 in the registry; the spec names 2.0.0 and ">=2.0,<3".
    The host starts on the spec's own tag, plan offers 2.0.1 (never 3.0.0), update moves the nodes to it."""
    repo = f"{registry.address}/{docker_cleanup.name('range')}"
    digests = {version: push(docker_engine, registry, f"{repo}:{version}", standin_image) for version in ("2.0.0", "2.0.1", "3.0.0")}
    cluster = Cluster(tmp_path, docker_engine, f"{repo}:2.0.0", docker_cleanup.name("r"), free_port_block(4))
    cluster.write(count=2, updates={"policy": "report", "versions": ">=2.0,<3", "analysis_minutes": 1})
    applied = cluster.apply()
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert set(image_ids(cluster).values()) == {image_id_of(docker_engine, f"{repo}:2.0.0", digests["2.0.0"])}

    planned = cluster.run("plan", str(cluster.spec))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    line = next(line for line in planned.stdout.splitlines() if line.startswith("Image update:"))
    assert line.startswith(f"Image update: {repo}: 2.0.0 {digests['2.0.0'][:19]}")
    assert f"-> 2.0.1 {digests['2.0.1'][:19]}" in line and line.endswith("(the newest tag inside >=2.0,<3)")
    assert "3.0.0" not in planned.stdout and digests["3.0.0"][:19] not in planned.stdout
    assert "not taken: updates.policy is report" in planned.stdout and "No changes" in planned.stdout

    updated = cluster.run("update", "--auto-approve", str(cluster.spec))
    assert updated.returncode == 0, updated.stdout + updated.stderr
    new_id = image_id_of(docker_engine, f"{repo}:2.0.1", digests["2.0.1"])
    assert set(image_ids(cluster).values()) == {new_id}
    assert {r.digest for r in open_state(cluster.state).images.of_nodes().values()} == {digests["2.0.1"]}

    again = cluster.run("plan", str(cluster.spec))
    assert again.returncode == 0 and "Image update:" not in again.stdout and "No changes" in again.stdout, again.stdout


def test_rollback_returns_to_the_image_id_the_generation_ran_not_what_its_tag_means_now(
    cluster, docker_engine, registry, tag, standin_image
):
    first = push(docker_engine, registry, tag, standin_image, keep=True)
    cluster.write(count=2, updates={"policy": "report", "analysis_minutes": 1})
    assert cluster.apply().returncode == 0
    keys = cluster.keys()
    second = push(docker_engine, registry, tag, standin_image)
    assert cluster.run("update", "--auto-approve", str(cluster.spec)).returncode == 0
    assert set(image_ids(cluster).values()) == {image_id_of(docker_engine, tag, second)}

    back = cluster.run("rollback", "1", "--auto-approve")
    assert back.returncode == 0, back.stdout + back.stderr
    assert set(image_ids(cluster).values()) == {image_id_of(docker_engine, tag, first)}
    assert cluster.keys() == keys
    history = json.loads(cluster.run("history", "--json").stdout)
    assert [{i["digest"] for i in g["images"].values()} for g in history] == [{first}, {second}, {first}]


def delete_manifest(registry, repo_tag: str, digest: str) -> None:
    """Yank a tag as a registry's owner does: DELETE the manifest by digest (Registry API v2)."""
    name = repo_tag.split("/", 1)[1].rsplit(":", 1)[0]
    request = urllib.request.Request(f"http://{registry.address}/v2/{name}/manifests/{digest}", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202


def test_a_yanked_tag_leaves_the_nodes_on_it_with_a_warning(registry, docker_engine, docker_cleanup, tmp_path, standin_image):
    """updates.versions ">=2.0,<3" under auto: the nodes move up to 2.0.1; once the registry no longer
    lists 2.0.1, the newest tag inside the range is 2.0.0, and the nodes stay on 2.0.1 all the same."""
    repo = f"{registry.address}/{docker_cleanup.name('yank')}"
    digests = {version: push(docker_engine, registry, f"{repo}:{version}", standin_image) for version in ("2.0.0", "2.0.1")}
    cluster = Cluster(tmp_path, docker_engine, f"{repo}:2.0.0", docker_cleanup.name("y"), free_port_block(4))
    cluster.write(count=2, updates={"policy": "auto", "versions": ">=2.0,<3", "analysis_minutes": 1})
    assert cluster.apply().returncode == 0  # a new host starts on the spec's own tag
    moved = cluster.apply()
    assert moved.returncode == 0, moved.stdout + moved.stderr
    newer = image_id_of(docker_engine, f"{repo}:2.0.1", digests["2.0.1"])
    assert set(image_ids(cluster).values()) == {newer}
    before = container_ids(cluster)

    delete_manifest(registry, f"{repo}:2.0.1", digests["2.0.1"])
    for argv in (("plan", str(cluster.spec)), ("apply", "--auto-approve", str(cluster.spec)), ("update", "--auto-approve", str(cluster.spec))):
        result = cluster.run(*argv)
        assert result.returncode == 0, result.stdout + result.stderr
        out = " ".join((result.stdout + result.stderr).split())  # rich wraps long lines
        assert f"{repo}:2.0.1 that the nodes run is no longer listed by the registry (yanked?), and {repo}:2.0.0 is below it" in out, out
        assert "the nodes stay where they are" in out and "Image update:" not in out
    assert set(image_ids(cluster).values()) == {newer} and container_ids(cluster) == before
    assert {r.digest for r in open_state(cluster.state).images.of_nodes().values()} == {digests["2.0.1"]}


def test_a_digest_that_says_it_is_lower_is_refused_at_its_probe_before_any_node_is_touched(
    cluster, docker_engine, registry, tag, standin_image, standin_image_factory
):
    """The nodes run 2.0.1; the tag moves to an image that says 2.0.0. `conduit update` pulls it, asks
    it, and stops (exit 1, no generation, no node touched); the next plan knows what it said."""
    push(docker_engine, registry, tag, standin_image_factory("2.0.1"), keep=True)
    cluster.write(count=2, updates={"policy": "report", "analysis_minutes": 1})
    assert cluster.apply().returncode == 0
    lower = push(docker_engine, registry, tag, standin_image)
    before, gens = container_ids(cluster), cluster.generations()
    refused = cluster.run("update", "--auto-approve", str(cluster.spec))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"says it is official 2.0.0, below 2.0.1 that the nodes run: versions move up only" in flat(refused)
    assert container_ids(cluster) == before and cluster.generations() == gens
    planned = cluster.run("plan", str(cluster.spec))
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert f"now means {lower[:19]}, which says it is 2.0.0, below 2.0.1 that the nodes run" in flat(planned)
    assert "Image update:" not in planned.stdout and "No changes" in planned.stdout
