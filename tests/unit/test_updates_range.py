"""choose_image under updates.versions: the tag followed is the newest inside the range, the
plan says which tags it moves between, and a registry that cannot list its tags leaves the
spec's own tag followed with a warning. A new digest is never pulled here: one Docker does not
have is named repository@digest, for the plan's pull and probe steps. The engine and the
registry are stand-ins here (tests/integration/test_updates.py drives the real ones)."""

from __future__ import annotations

import pytest

from conduit.drivers.registry import TagsError
from conduit.engine import updates
from conduit.engine.images import record_learned
from conduit.engine.settle import Learned
from conduit.engine.updates import UpdateRequest, choose_image
from conduit.spec.load import load_text
from conduit.spec.policy import HostPolicy
from conduit.state.db import Database
from conduit.state.images import Images
from conduit.views.report import update_lines
from tests.helpers import SMALL_VPS, dump, minimal

REPO = "ghcr.io/psiphon-inc/conduit/cli"
DIGEST = {"2.0.0": "sha256:" + "0" * 64, "2.0.1": "sha256:" + "1" * 64, "3.0.0": "sha256:" + "3" * 64}
ID = {tag: "sha256:" + c * 64 for tag, c in (("2.0.0", "a"), ("2.0.1", "b"), ("3.0.0", "c"))}


def doc(versions: str | None = ">=2.0,<3", policy: str = "report", tag: str = "2.0.0"):
    updates_ = {"policy": policy} | ({"versions": versions} if versions else {})
    text = dump(minimal(containers={"count": 1, "image": f"{REPO}:{tag}"}, updates=updates_))
    return load_text(text, "cluster.yaml", SMALL_VPS, (HostPolicy(), "p"))


class Registry:
    """The engine's images and the registry's tags, as updates' drivers see them."""

    def __init__(self, monkeypatch, tags=("2.0.0", "2.0.1", "3.0.0", "latest"), local=("2.0.0",), tagged=True, pulled=()):
        self.tags = list(tags) if tags is not None else None
        self.listed = 0
        self.asked: list[str] = []
        self.images = {}
        for tag in local:
            attrs = {"Id": ID[tag], "RepoTags": [f"{REPO}:{tag}"] if tagged else [], "RepoDigests": [f"{REPO}@{DIGEST[tag]}"]}
            self.images[ID[tag]] = attrs
            self.images[f"{REPO}@{DIGEST[tag]}"] = attrs
            if tagged:
                self.images[f"{REPO}:{tag}"] = attrs
        for tag in pulled:  # pulled by digest at an earlier apply: no tag here
            self.images[ID[tag]] = self.images[f"{REPO}@{DIGEST[tag]}"] = {"Id": ID[tag], "RepoTags": [], "RepoDigests": [f"{REPO}@{DIGEST[tag]}"]}
        self.inspected: list[str] = []
        monkeypatch.setattr(updates, "inspect_image", self.inspect_image)
        monkeypatch.setattr(updates, "registry_digest", self.registry_digest)
        monkeypatch.setattr(updates, "list_tags", self.list_tags)

    def inspect_image(self, client, ref):
        self.inspected.append(ref)
        return self.images.get(ref)

    def list_tags(self, image):
        self.listed += 1
        if self.tags is None:
            raise TagsError("ghcr.io/psiphon-inc/conduit/cli: cannot reach ghcr.io: no answer within 10 s")
        return self.tags

    def registry_digest(self, client, image):
        self.asked.append(image)
        return DIGEST[image.rsplit(":", 1)[1]]



def by_digest(tag: str) -> str:
    return f"{REPO}@{DIGEST[tag]}"


@pytest.fixture
def images(tmp_path):
    return Images(Database(tmp_path / "state"))


def test_the_newest_tag_inside_the_range_is_offered(monkeypatch, images):
    reg = Registry(monkeypatch)
    choice = choose_image(doc(), object(), images, UpdateRequest())
    assert reg.asked == [f"{REPO}:2.0.1"]  # not 3.0.0, not the spec's own tag
    assert choice.ref == ID["2.0.0"] and choice.warnings == []
    update = choice.update
    assert update.image == f"{REPO}:2.0.1" and (update.old_tag, update.new_tag, update.versions) == ("2.0.0", "2.0.1", ">=2.0,<3")
    # Not on this host: named by its digest, not pulled, its version unknown until it is
    assert (update.old_id, update.new_id, update.new_digest) == (ID["2.0.0"], by_digest("2.0.1"), DIGEST["2.0.1"])
    assert not update.pulled and update.new_version is None
    assert not update.taken and "conduit update" in update.why_not


def test_conduit_update_takes_it_as_a_pull_of_its_digest(monkeypatch, images):
    Registry(monkeypatch)
    choice = choose_image(doc(), object(), images, UpdateRequest(take=True))
    assert choice.ref == by_digest("2.0.1") and choice.pull and choice.update.taken and choice.attrs is None


def test_a_new_digest_already_on_this_host_is_taken_by_its_image_id(monkeypatch, images):
    Registry(monkeypatch, pulled=("2.0.1",))
    choice = choose_image(doc(), object(), images, UpdateRequest(take=True))
    assert choice.ref == ID["2.0.1"] and not choice.pull and choice.update.taken and choice.update.pulled


def test_the_plan_names_both_tags_and_the_range(monkeypatch, images):
    from dataclasses import asdict

    Registry(monkeypatch)
    lines = update_lines(asdict(choose_image(doc(), object(), images, UpdateRequest()).update))
    assert lines[0] == (
        f"\n[bold]Image update:[/bold] {REPO}: 2.0.0 {DIGEST['2.0.0'][:19]} -> 2.0.1 {DIGEST['2.0.1'][:19]}"
        " (its version is known once pulled) (the newest tag inside >=2.0,<3)"
    )
    assert lines[1] == "  not taken: updates.policy is report: `conduit update` takes it"


def test_nothing_new_when_the_nodes_run_the_newest_tag_inside(monkeypatch, images):
    reg = Registry(monkeypatch, tags=["2.0.0", "3.0.0"])
    choice = choose_image(doc(), object(), images, UpdateRequest())
    assert choice.update is None and choice.ref == ID["2.0.0"] and reg.asked == [f"{REPO}:2.0.0"]


def test_a_registry_that_cannot_list_its_tags_leaves_the_spec_tag_followed(monkeypatch, images):
    reg = Registry(monkeypatch, tags=None)
    choice = choose_image(doc(), object(), images, UpdateRequest())
    assert reg.asked == [f"{REPO}:2.0.0"] and choice.update is None
    (warning,) = choice.warnings
    assert warning == (
        f"updates: cannot list the tags of {REPO} (ghcr.io/psiphon-inc/conduit/cli: cannot reach ghcr.io: no answer within 10 s); "
        f"following {REPO}:2.0.0 itself"
    )


def test_no_tag_inside_the_range_is_a_warning(monkeypatch, images):
    reg = Registry(monkeypatch, tags=["2.0.0", "latest"])
    choice = choose_image(doc(versions=">=4"), object(), images, UpdateRequest())
    assert reg.asked == [f"{REPO}:2.0.0"]
    assert choice.warnings == [f"updates: no tag of {REPO} is inside >=4; following {REPO}:2.0.0 itself"]


def test_a_new_host_starts_on_the_spec_tag(monkeypatch, images):
    reg = Registry(monkeypatch, local=())
    choice = choose_image(doc(), object(), images, UpdateRequest())
    assert reg.listed == 0 and reg.asked == [f"{REPO}:2.0.0"]
    assert choice.ref == f"{REPO}:2.0.0" and choice.update is None and not choice.pull  # the plan pulls the tag


def test_without_a_range_the_tags_are_never_listed(monkeypatch, images):
    reg = Registry(monkeypatch)
    choose_image(doc(versions=None), object(), images, UpdateRequest())
    assert reg.listed == 0 and reg.asked == [f"{REPO}:2.0.0"]


def test_watch_lists_the_tags_again_only_when_a_check_is_due(monkeypatch, images):
    reg = Registry(monkeypatch)
    for _ in range(3):
        learned = Learned()
        choice = choose_image(doc(), object(), images, UpdateRequest(registry="due"), learned=learned)
        assert choice.update.image == f"{REPO}:2.0.1"
        record_learned(images, learned)  # as the apply does; the plan itself writes nothing
    assert reg.listed == 1 and reg.asked == [f"{REPO}:2.0.1"]
    choose_image(doc(), object(), images, UpdateRequest())  # plan and apply ask now
    assert reg.listed == 2


def test_the_old_tag_from_the_registrys_last_answer_when_the_image_has_no_tag_here(monkeypatch, images):
    """Images pulled by digest carry no tag on the host: the tag the registry last gave that digest for."""
    Registry(monkeypatch, local=("2.0.0",), tagged=False)
    images.record_check(f"{REPO}:2.0.0", DIGEST["2.0.0"])
    images.record_nodes(1, {"n-1": updates.NodeImage(f"{REPO}:2.0.0", ID["2.0.0"], DIGEST["2.0.0"], None)})
    update = choose_image(doc(), object(), images, UpdateRequest()).update
    assert (update.old_tag, update.new_tag) == ("2.0.0", "2.0.1")


def test_a_flavored_tag_follows_its_flavor(monkeypatch, images):
    DIGEST["2.0.0-distroless"], DIGEST["2.0.4-distroless"] = "sha256:" + "d" * 64, "sha256:" + "e" * 64
    ID["2.0.0-distroless"], ID["2.0.4-distroless"] = "sha256:" + "f" * 64, "sha256:" + "9" * 64
    try:
        reg = Registry(monkeypatch, tags=["2.0.0", "2.0.5", "2.0.0-distroless", "2.0.4-distroless"], local=("2.0.0-distroless",))
        update = choose_image(doc(tag="2.0.0-distroless"), object(), images, UpdateRequest()).update
        assert reg.asked == [f"{REPO}:2.0.4-distroless"] and update.new_tag == "2.0.4-distroless"
    finally:
        for table in (DIGEST, ID):
            table.pop("2.0.0-distroless"), table.pop("2.0.4-distroless")


# ---------------------------------------------------------------- versions move up only


def on_2_0_1(monkeypatch, images, tags, policy="auto"):
    """Nodes on 2.0.1 (pulled by digest: no tag here, the registry's last answer names it)."""
    reg = Registry(monkeypatch, tags=tags, local=("2.0.1",), tagged=False)
    images.record_check(f"{REPO}:2.0.1", DIGEST["2.0.1"])
    images.record_nodes(1, {"n-1": updates.NodeImage(f"{REPO}:2.0.0", ID["2.0.1"], DIGEST["2.0.1"], None)})
    return reg, doc(policy=policy)


def test_a_yanked_tag_leaves_the_nodes_on_it_with_a_warning(monkeypatch, images):
    reg, spec = on_2_0_1(monkeypatch, images, tags=["2.0.0", "3.0.0", "latest"])
    choice = choose_image(spec, object(), images, UpdateRequest())
    assert choice.ref == ID["2.0.1"] and choice.update is None
    assert reg.asked == []  # 2.0.0 is not even asked about: it is no update
    assert choice.warnings == [
        f"updates: {REPO}:2.0.1 that the nodes run is no longer listed by the registry (yanked?), and {REPO}:2.0.0 is below it; "
        f"{updates.STAYS}"
    ]


def test_conduit_update_does_not_take_the_nodes_down_either(monkeypatch, images):
    _, spec = on_2_0_1(monkeypatch, images, tags=["2.0.0"])
    choice = choose_image(spec, object(), images, UpdateRequest(take=True))
    assert choice.ref == ID["2.0.1"] and choice.update is None and updates.STAYS in choice.warnings[-1]


def test_a_yanked_tag_with_a_newer_one_inside_the_range_moves_up_and_says_so(monkeypatch, images):
    DIGEST["2.0.2"], ID["2.0.2"] = "sha256:" + "2" * 64, "sha256:" + "4" * 64
    try:
        reg, spec = on_2_0_1(monkeypatch, images, tags=["2.0.0", "2.0.2"])
        choice = choose_image(spec, object(), images, UpdateRequest())
        assert reg.asked == [f"{REPO}:2.0.2"] and choice.ref == by_digest("2.0.2") and choice.update.taken
        assert choice.warnings == [f"updates: {REPO}:2.0.1 that the nodes run is no longer listed by the registry (yanked?)"]
    finally:
        DIGEST.pop("2.0.2"), ID.pop("2.0.2")


def test_a_cached_answer_below_the_nodes_is_not_taken_either(monkeypatch, images):
    _, spec = on_2_0_1(monkeypatch, images, tags=["2.0.0"])
    images.record_check(f"{REPO} >=2.0,<3", "2.0.0")  # what watch asked a minute ago
    choice = choose_image(spec, object(), images, UpdateRequest(registry="due"))
    assert choice.ref == ID["2.0.1"] and choice.update is None
    assert choice.warnings == [f"updates: {REPO}:2.0.0 is below {REPO}:2.0.1 that the nodes run; {updates.STAYS}"]


def test_a_registry_that_cannot_list_never_sends_the_nodes_back_to_the_spec_tag(monkeypatch, images):
    reg, spec = on_2_0_1(monkeypatch, images, tags=None)
    choice = choose_image(spec, object(), images, UpdateRequest())
    assert reg.asked == [] and choice.ref == ID["2.0.1"] and choice.update is None
    assert choice.warnings[-1] == f"updates: {REPO}:2.0.0 is below {REPO}:2.0.1 that the nodes run; {updates.STAYS}"


def test_the_version_the_image_said_stands_in_when_its_tag_is_unknown(monkeypatch, images):
    """No tag for the nodes' image anywhere: the version it said it is, from the facts cache."""
    Registry(monkeypatch, tags=["2.0.0"], local=("2.0.1",), tagged=False)
    images.save_facts(ID["2.0.1"], facts_saying("2.0.1"))
    images.record_nodes(1, {"n-1": updates.NodeImage(f"{REPO}:2.0.0", ID["2.0.1"], DIGEST["2.0.1"], None)})
    choice = choose_image(doc(policy="auto"), object(), images, UpdateRequest())
    assert choice.ref == ID["2.0.1"] and choice.update is None
    assert choice.warnings == [f"updates: {REPO}:2.0.0 is below version 2.0.1 that the nodes run; {updates.STAYS}"]


def facts_saying(version: str) -> str:
    from conduit.spec.image import from_probe

    return from_probe(f"{REPO}:x", None, f"conduit version {version}", "", False).to_json()


def moved_tag(monkeypatch, says: dict[str, str], pulled=("2.0.0",)):
    """Without a range: the spec's tag 2.0.0 on this host is the 2.0.1 image; the registry now gives
    the tag another digest (on this host when an earlier apply pulled it). `says`: the version each image ID says it is."""
    reg = Registry(monkeypatch, local=("2.0.1",), pulled=pulled)
    reg.images[f"{REPO}:2.0.0"] = reg.images[ID["2.0.1"]]
    return reg, lambda image_id, attrs: says.get(image_id)


def test_a_tag_moved_to_an_image_that_says_it_is_lower_is_not_taken(monkeypatch, images):
    _, version_of = moved_tag(monkeypatch, {ID["2.0.1"]: "2.0.1", ID["2.0.0"]: "2.0.0"})
    for request in (UpdateRequest(), UpdateRequest(take=True)):
        choice = choose_image(doc(versions=None, policy="auto"), object(), images, request, version_of)
        assert choice.ref == ID["2.0.1"] and choice.update is None
        assert choice.warnings == [
            f"updates: {REPO}:2.0.0 now means {DIGEST['2.0.0'][:19]}, which says it is 2.0.0, below 2.0.1 that the nodes run; "
            f"{updates.STAYS}"
        ]


@pytest.mark.parametrize("new", ["2.0.1", "2.0.2", None])
def test_a_tag_moved_to_an_equal_higher_or_unknown_version_is_an_update(monkeypatch, images, new):
    _, version_of = moved_tag(monkeypatch, {ID["2.0.1"]: "2.0.1", ID["2.0.0"]: new})
    choice = choose_image(doc(versions=None, policy="auto"), object(), images, UpdateRequest(), version_of)
    assert choice.ref == ID["2.0.0"] and choice.update.taken and choice.warnings == []


def test_a_moved_tag_not_on_this_host_is_neither_pulled_nor_asked(monkeypatch, images):
    """Its version is asked by the plan's probe step, once the pull step has it (the apply refuses a lower one)."""
    asked = []
    reg, _ = moved_tag(monkeypatch, {}, pulled=())
    choice = choose_image(doc(versions=None, policy="auto"), object(), images, UpdateRequest(),
                          lambda image_id, attrs: asked.append(image_id))
    assert choice.ref == by_digest("2.0.0") and choice.pull and choice.update.taken and asked == []
    assert reg.inspected.count(by_digest("2.0.0")) == 1  # a read of Docker's images, nothing else


def test_a_refused_digest_stays_refused_once_pulled(monkeypatch, images):
    """A canary refused while the image was known by its digest only is not taken again by itself once Docker has it."""
    Registry(monkeypatch, pulled=("2.0.1",))
    images.refuse(by_digest("2.0.1"), f"{REPO}:2.0.1", 2, "canary failed")
    choice = choose_image(doc(policy="auto"), object(), images, UpdateRequest())
    assert not choice.update.taken and "its canary failed at generation 2" in choice.update.why_not
