"""The image is asked what it speaks, once per image ID, through the private engine."""

from __future__ import annotations

import pytest

from conduit.drivers.docker import PROBE_LABEL, CountingClient, _run_once
from conduit.engine.images import asked_facts, reader
from conduit.engine.observe import observe_image
from conduit.engine.settle import Learned, settle
from conduit.engine.updates import UpdateRequest
from conduit.execute.image_probe import probe_pulled
from conduit.state.db import Database
from conduit.state.images import Images
from conduit.spec.load import load_text
from conduit.state.stores import open_state
from conduit.render.container import container_props
from conduit.spec.resolve import image_facts, node_settings
from tests.helpers import SMALL_VPS, dump, minimal

pytestmark = pytest.mark.integration


def spec(image: str, **conduit):
    doc = minimal(
        containers={"count": 1, "image": image, "resources": {"cpus": 0.2, "memory": "96MiB"}},
        conduit={"max_clients": 40, "bandwidth_mbps": 2, **conduit},
    )
    return load_text(dump(doc), "c.yaml", SMALL_VPS)


def settle_image(doc, client, state_dir):
    """The spec settled as a plan's observation sees its image."""
    return settle(doc, observe_image(doc, client, reader(state_dir), UpdateRequest(), Learned()))


def probe_containers(engine) -> list:
    return engine.client.containers.list(all=True, filters={"label": PROBE_LABEL})


def test_probe_asks_the_image_and_caches_by_image_id(docker_engine, standin_image, tmp_path):
    client = CountingClient(docker_engine.host)
    image_id = docker_engine.client.images.get(standin_image).id

    facts, unkept = asked_facts(client, standin_image, tmp_path)
    assert unkept is None and facts.source == "image" and facts.image_id == image_id
    assert facts.version == "2.0.0" and facts.cli == "2.x" and facts.exact
    assert facts.has_metrics_addr and facts.has_personal and facts.has_set and facts.has_stats_file is False
    assert facts.has_monitor is True  # HEAD of the archive endpoint of its probe container, over plain HTTP
    assert probe_containers(docker_engine) == []  # the throwaway containers are gone
    assert open_state(tmp_path).images.facts(image_id) is not None

    before = client.calls
    again, _ = asked_facts(client, standin_image, tmp_path)
    # one inspect of the image; its facts come from the cache: no container is created or run
    assert client.calls - before == 1
    assert again == facts


def test_a_probe_run_asks_docker_five_times(docker_engine, standin_image):
    client = CountingClient(docker_engine.host)
    code, said, _ = _run_once(client, standin_image, ["--version"])
    assert code == 0 and "2.0.0" in said
    # create, start, wait, logs, remove: the container is made without a TTY, so its log is read
    # without an inspect to learn that (the SDK's logs() asks one)
    assert client.calls == 5


def test_plan_time_facts_drive_the_render(docker_engine, standin_image, tmp_path):
    client = CountingClient(docker_engine.host)
    settled = settle_image(spec(standin_image), client, tmp_path)
    assert settled.problems == [] and settled.warnings == []
    assert image_facts(settled.spec).source == "image" and settled.spec.spec.conduit.cli_version == "2.x"
    command = container_props(settled.spec, node_settings(settled.spec, 1))["command"]
    assert "--metrics-addr" in command and "--stats-file" not in command


def test_an_override_the_image_contradicts_is_a_plan_problem(docker_engine, standin_image, tmp_path):
    settled = settle_image(spec(standin_image, cli_version="1.x"), CountingClient(docker_engine.host), tmp_path)
    assert settled.problems == [f"spec.conduit.cli_version: is 1.x, but {standin_image} says it is official 2.0.0"]


def test_extra_args_are_checked_against_the_images_own_list(docker_engine, standin_image, tmp_path):
    doc = spec("conduit-standin:latest-unpinned", extra_args=["--no-such-flag"])
    doc = doc.model_copy(update={"spec": doc.spec.model_copy(update={"containers": doc.spec.containers.model_copy(update={"image": standin_image})})})
    settled = settle_image(doc, CountingClient(docker_engine.host), tmp_path)
    assert settled.problems == [
        "spec.conduit.extra_args.0: --no-such-flag is not a flag of official 2.0.0's conduit start; it would exit at start"
    ]


def test_an_image_not_on_the_host_falls_back_with_a_warning(docker_engine, tmp_path):
    client = CountingClient(docker_engine.host)
    settled = settle_image(spec("ghcr.io/psiphon-inc/conduit/cli:latest"), client, tmp_path)
    (warning,) = settled.warnings
    assert "it is not on this host" in warning and "-m -b -d" in warning
    assert settled.spec.spec.conduit.cli_version == "auto"
    command = container_props(settled.spec, node_settings(settled.spec, 1))["command"]
    assert command == ["start", "-m", "40", "-b", "2", "-d", "/home/conduit/data"]

    pinned = settle_image(spec("ghcr.io/psiphon-inc/conduit/cli:1.1.0"), client, tmp_path)
    assert pinned.warnings == [
        "cannot ask ghcr.io/psiphon-inc/conduit/cli:1.1.0 which CLI it speaks (it is not on this host); "
        "taking it as official 1.1.0 from its tag",
        "ghcr.io/psiphon-inc/conduit/cli:1.1.0 is official 1.1.0, which has no --metrics-addr: the nodes publish no metrics",
    ]


def test_a_probe_step_records_in_the_store_it_is_given_and_says_when_it_cannot(docker_engine, standin_image, tmp_path):
    client = CountingClient(docker_engine.host)
    image_id = docker_engine.client.images.get(standin_image).id
    expected = {"image": standin_image, "cli": "2.x", "build": "official", "rendered_for": "official 2.0.0", "floor": "2.0.0"}
    images, said = open_state(tmp_path / "state").images, []
    assert probe_pulled(client, expected, images, said.append) is None
    assert said == [] and images.facts(image_id).describe() == "official 2.0.0"

    frozen = tmp_path / "frozen"
    open_state(frozen)  # a database, then opened read-only: the record fails as on a read-only or broken state
    read_only, said = Images(Database(frozen, readonly=True)), []
    assert probe_pulled(client, expected, read_only, said.append) is None  # the answer still stands
    (line,) = said
    assert line.startswith(f"what {standin_image} said it speaks was not recorded, the next plan asks it again: state directory {frozen}")
    assert read_only.facts(image_id) is None


def test_an_answer_the_state_cannot_keep_is_said_and_still_used(docker_engine, standin_image, tmp_path):
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state directory should be")
    facts, unkept = asked_facts(CountingClient(docker_engine.host), standin_image, blocked)
    assert facts is not None and facts.version == "2.0.0"
    assert unkept.startswith(f"what {standin_image} says of itself was not kept (") and unkept.endswith("; the next command asks it again")
    assert "\n" not in unkept
