"""Which kept inspect answers status may trust (the engine's events since the anchor), and a
node's log read from the engine's json-file."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from conduit.drivers import inspected, node
from conduit.drivers.docker import IMAGE, VOLUMES, recalled
from conduit.drivers.inspected import Kept, after_anchor, anchor_of, load, newest, save, stale, still_good, touched
from conduit.facts import nodelog


def event(ns: int, action: str, actor: str, kind: str = "container") -> dict:
    return {"Type": kind, "Action": action, "Actor": {"ID": actor, "Attributes": {}}, "time": ns // 10**9, "timeNano": ns}


def info(cid: str, status: str = "running") -> dict:
    return inspected.trim({"Id": cid, "State": {"Status": status, "Running": True}, "RestartCount": 0})


ANCHOR = event(10, "start", "a")
KEPT = Kept(anchor_of(ANCHOR), {"a": info("a"), "b": info("b")})
LISTED = {"a": {"Id": "a", "State": "running"}, "b": {"Id": "b", "State": "running"}}


def test_a_node_with_no_event_since_the_anchor_keeps_its_answer_and_one_with_events_is_asked_again():
    assert stale(LISTED, KEPT, [ANCHOR]) == {}  # the anchor itself was seen by the last look
    assert stale(LISTED, KEPT, [event(10, "die", "b"), ANCHOR]) == {}  # so were those before it
    assert stale(LISTED, KEPT, [ANCHOR, event(11, "die", "b"), event(12, "create", "other", "volume")]) == {"b": "it has events since the last look"}
    assert stale({**LISTED, "c": {"Id": "c", "State": "running"}}, KEPT, [ANCHOR]) == {"c": "not looked at yet"}
    assert stale({**LISTED, "a": {"Id": "a", "State": "exited"}}, KEPT, [ANCHOR]) == {"a": "its state moved"}


def test_when_the_anchor_is_gone_every_node_is_asked_again():
    lost = "events since the last look may be lost (anchor gone)"
    assert stale(LISTED, KEPT, [event(11, "tag", "img", "image")] * 256) == {"a": lost, "b": lost}
    assert stale(LISTED, KEPT, []) == {"a": lost, "b": lost}  # an engine that restarted: its buffer is new
    assert stale(LISTED, Kept(None, KEPT.infos), [ANCHOR]) == {"a": lost, "b": lost}
    assert set(stale(LISTED, KEPT, None).values()) == {"no events answer"}


ANSWERS = {IMAGE + "repo:tag": {"Id": "sha256:1", "RepoTags": ["repo:tag"]}, IMAGE + "sha256:2": None, VOLUMES: {"Volumes": []}}


def test_the_drift_checks_kept_answers_go_with_the_events_that_can_change_them():
    images = {k: v for k, v in ANSWERS.items() if k.startswith(IMAGE)}
    assert still_good(ANSWERS, []) == ANSWERS
    assert still_good(ANSWERS, [event(11, "die", "a"), event(12, "mount", "v", "volume"), event(13, "unmount", "v", "volume")]) == ANSWERS
    for action in ("pull", "tag", "untag", "delete", "load", "import", "prune"):  # whichever image or tag it names
        assert still_good(ANSWERS, [event(11, action, "sha256:other", "image")]) == {VOLUMES: ANSWERS[VOLUMES]}
    for action in ("create", "destroy", "prune"):
        assert still_good(ANSWERS, [event(11, action, "v", "volume")]) == images
    assert still_good(ANSWERS, None) == {}  # the anchor gone: nothing proves them


def test_with_the_anchor_gone_no_kept_answer_is_used():
    look = inspected.Look(None, None, Kept(anchor_of(ANCHOR), {}, ANSWERS), [event(11, "die", "a")])
    assert look.answers() == {}
    assert inspected.Look(None, None, Kept(anchor_of(ANCHOR), {}, ANSWERS), [ANCHOR, event(11, "die", "a")]).answers() == ANSWERS
    assert inspected.Look(None, None, Kept(None, {}, ANSWERS), [ANCHOR]).answers() == {}
    assert inspected.Look(None, None, Kept(anchor_of(ANCHOR), {}, ANSWERS), None).answers() == {}


class Asking:
    kept: dict | None = None
    asked = 0

    def ask(self):
        self.asked += 1
        return {"Volumes": [{"Name": f"v{self.asked}"}]}


def test_a_recalled_answer_is_asked_once_when_kept_and_every_time_when_not():
    client = Asking()
    assert recalled(client, VOLUMES, client.ask) == {"Volumes": [{"Name": "v1"}]}
    assert recalled(client, VOLUMES, client.ask)["Volumes"][0]["Name"] == "v2"  # a plan's client: fresh
    client.kept = {}
    assert recalled(client, VOLUMES, client.ask)["Volumes"][0]["Name"] == "v3"
    assert recalled(client, VOLUMES, client.ask)["Volumes"][0]["Name"] == "v3"
    assert client.kept == {VOLUMES: {"Volumes": [{"Name": "v3"}]}} and client.asked == 3


EVENTISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["Type", "Action", "Actor", "ID", "timeNano"]), inner, max_size=4),
    max_leaves=10,
)


@given(st.lists(EVENTISH, max_size=6))
def test_any_events_answer_never_raises(events):
    assert isinstance(touched(events), set)
    assert after_anchor(events, (1, "x")) is None or isinstance(after_anchor(events, (1, "x")), list)
    found = newest(events)
    assert found is None or (isinstance(found[0], int) and found[0] > 0)


@given(st.text(max_size=200) | st.builds(json.dumps, EVENTISH))
def test_any_kept_file_reads_as_kept_answers_or_as_nothing(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("kept") / "inspected-x.json"
    path.write_text(text)
    kept = load(path)
    assert kept.anchor is None or isinstance(kept.anchor[0], int)
    assert all(isinstance(v, dict) for v in kept.infos.values())
    assert all(k == VOLUMES or k.startswith(IMAGE) for k in kept.answers)


@given(st.builds(lambda anchor, answers: json.dumps({"anchor": anchor, "infos": {}, "answers": answers}), EVENTISH, EVENTISH))
def test_any_kept_drift_answers_read_as_answers_of_their_shape_or_as_none(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("kept") / "inspected-x.json"
    path.write_text(text)
    kept = load(path)
    assert isinstance(kept.answers.get(VOLUMES, {}), dict)
    assert all(v is None or isinstance(v, dict) for k, v in kept.answers.items() if k != VOLUMES)


def test_kept_answers_read_back_as_written(tmp_path):
    save(tmp_path / "inspected-x.json", KEPT)
    assert load(tmp_path / "inspected-x.json") == KEPT
    with_answers = Kept(KEPT.anchor, KEPT.infos, ANSWERS)
    save(tmp_path / "inspected-x.json", with_answers)
    assert load(tmp_path / "inspected-x.json") == with_answers
    save(tmp_path / "absent" / "inspected-x.json", KEPT)  # no state directory: nothing kept, no error
    assert load(tmp_path / "absent" / "inspected-x.json") == Kept()


def record(text: str, second: int) -> str:
    return json.dumps({"log": text + "\n", "stream": "stderr", "time": f"2025-01-02T00:00:{second:02d}.000000001Z"})


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"))))
def test_a_json_file_log_reads_as_the_engines_timestamped_lines(lines):
    raw = "\n".join(record(text, i % 60) for i, text in enumerate(lines))
    assert nodelog.this_run(nodelog.json_file(raw + '\n{"log": "torn'), "") == lines


@given(st.binary(max_size=400))
def test_any_bytes_in_a_json_file_log_never_raise(data):
    assert isinstance(nodelog.json_file(data.decode(errors="replace")), str)


def test_the_log_file_is_read_back_to_the_current_run_only(tmp_path):
    path = tmp_path / "id-json.log"
    old = [record(f"old {i}", 0) for i in range(30000)]
    path.write_text("\n".join([*old, record("Starting Psiphon Conduit (Max Clients: 5, Bandwidth: 2 Mbps)", 5)]) + "\n")
    assert node.file_log(str(path), "2025-01-02T00:00:05.5Z", "2025-01-02T00:00:04Z") == ["Starting Psiphon Conduit (Max Clients: 5, Bandwidth: 2 Mbps)"]
    assert len(node.file_log(str(path), "2025-01-02T00:00:05Z", "")) == 30001  # a first run: its whole log


def test_a_log_that_is_a_link_absent_or_rotated_past_the_run_is_left_to_the_engine(tmp_path):
    path = tmp_path / "id-json.log"
    path.write_text(record("before", 4) + "\n" + record("new", 5) + "\n")
    (tmp_path / "link-json.log").symlink_to(path)
    assert node.file_log(str(tmp_path / "link-json.log"), "") is None
    assert node.file_log(str(tmp_path / "absent"), "") is None
    assert node.file_log(str(tmp_path), "") is None  # not a plain file
    (tmp_path / "id-json.log.1").write_text(record("older", 1) + "\n")
    assert node.file_log(str(path), "2025-01-02T00:00:03Z", "2025-01-02T00:00:02Z") is None  # the run began in the rotated file
    assert node.file_log(str(path), "2025-01-02T00:00:05.5Z", "2025-01-02T00:00:04.5Z") == ["new"]
