"""`conduit history` fits 80 columns: reasons on their own line, empty columns hidden, all of it in --json."""

import json

from click.testing import CliRunner

from conduit.cli.root import main
from conduit.state.stores import open_state

REASON = "gate failed: container conduit-3 metrics endpoint did not answer within 60s; rolled back to generation 1"


def history(state_dir, *args):
    return CliRunner().invoke(main, ["--state-dir", str(state_dir), "history", *args], catch_exceptions=False)


def test_history_fits_80_columns_with_the_reason_beneath(tmp_path):
    state = open_state(tmp_path)
    first = state.history.begin("spec: 1\n", "a" * 64, "/etc/conduit/cluster.yaml", (None, None), "edge")
    state.history.finish(first, "succeeded")
    second = state.history.begin("spec: 2\n", "b" * 64, "/etc/conduit/cluster.yaml", ("0123456789abcdef", True), "edge")
    state.history.finish(second, "rolled_back", REASON)
    result = history(tmp_path)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].split() == ["gen", "started", "outcome", "spec", "git"]  # no image was recorded: no column
    assert lines[1].split()[0] == "1" and lines[1].split()[3] == "succeeded"
    assert lines[2].split()[4:] == ["bbbbbbbb", "01234567+"]
    assert lines[3].startswith("    gate failed:") and " ".join(line.strip() for line in lines[3:]) == REASON
    data = json.loads(history(tmp_path, "--json").output)
    assert data[1]["reason"] == REASON and data[1]["spec_hash"] == "b" * 64 and data[1]["git_commit"] == "0123456789abcdef"


def test_history_without_git_or_images_hides_those_columns(tmp_path):
    state = open_state(tmp_path)
    state.history.finish(state.history.begin("spec\n", "c" * 64, None, (None, None), "edge"), "succeeded")
    lines = history(tmp_path).output.splitlines()
    assert lines[0].split() == ["gen", "started", "outcome", "spec"] and len(lines) == 2


def test_history_shows_the_cluster_only_when_more_than_one_shares_the_state(tmp_path):
    state = open_state(tmp_path)
    state.history.finish(state.history.begin("spec\n", "c" * 64, None, (None, None), "edge"), "succeeded")
    assert "cluster" not in history(tmp_path).output.splitlines()[0]
    state.history.finish(state.history.begin("spec\n", "d" * 64, None, (None, None), "core"), "failed")
    lines = history(tmp_path).output.splitlines()
    assert lines[0].split() == ["gen", "cluster", "started", "outcome", "spec"]
    assert [line.split()[1] for line in lines[1:]] == ["edge", "core"]
    assert [g["cluster"] for g in json.loads(history(tmp_path, "--json").output)] == ["edge", "core"]


def test_images_that_would_not_fit_go_beneath_their_generation_whole(tmp_path):
    from conduit.state.images import NodeImage

    state = open_state(tmp_path)
    for cluster in ("edge-frankfurt", "core-helsinki"):
        gen = state.history.begin("spec\n", "e" * 64, "/etc/conduit/cluster.yaml", ("0123456789abcdef", False), cluster)
        state.images.record_nodes(gen, {f"{cluster}-1": NodeImage("ghcr.io/psiphon-inc/conduit/cli:2.0.0", "sha256:" + "1" * 64,
                                                                   "sha256:" + "2" * 64, "2.0.0 official")})  # fmt: skip
        state.history.finish(gen, "succeeded")
    lines = history(tmp_path).output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].split() == ["gen", "cluster", "started", "outcome", "spec", "git"]
    assert lines[2] == "    image sha256:222222222222 2.0.0 official" and lines[4] == lines[2]
