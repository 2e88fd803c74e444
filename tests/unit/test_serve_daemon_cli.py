"""`conduit serve` as the one daemon: --watch [FILE] and --git [URL] read with FILE, watch's own
options, and the one unit it prints."""

from __future__ import annotations

from click.testing import CliRunner

from conduit.cli.root import main
from tests.helpers import EXAMPLE


def serve(tmp_path, *args: str):
    return CliRunner().invoke(main, ["--state-dir", str(tmp_path), "serve", *args])


def exec_start(result) -> str:
    return next(line for line in result.stdout.splitlines() if line.startswith("ExecStart="))


def test_watch_file_and_file_watch_print_the_same_unit(tmp_path):
    before = serve(tmp_path, str(EXAMPLE), "--watch", "--print-unit")
    after = serve(tmp_path, "--watch", str(EXAMPLE), "--print-unit")
    assert before.exit_code == after.exit_code == 0, before.output + after.output
    assert exec_start(before) == exec_start(after)
    assert f"serve {EXAMPLE} " in exec_start(after) and " --watch --watch-interval 300.0" in exec_start(after)
    assert "agent, its watcher and its tracker in one process" in after.stdout


def test_watch_options_reach_the_unit(tmp_path):
    result = serve(tmp_path, "--watch", str(EXAMPLE), "--no-heal", "--allow-new-identity", "--print-unit")
    assert result.exit_code == 0, result.output
    assert exec_start(result).endswith("--watch --watch-interval 300.0 --no-heal --allow-new-identity")


def test_git_url_follows_a_repository_and_keeps_its_password_out_of_the_unit(tmp_path):
    result = serve(tmp_path, "--git", "https://ops:s3cret@example.org/ops.git", "--path", "hosts/a.yaml", "--poll", "30", "--print-unit")
    assert result.exit_code == 0, result.output
    line = exec_start(result)
    assert "serve --git https://example.org/ops.git --ref main --path hosts/a.yaml --poll 30.0" in line
    assert "s3cret" not in result.stdout and "--git-credentials-file /etc/conduit/secrets/git-credentials" in line


def test_git_alone_still_means_the_file_follows_git(tmp_path):
    result = serve(tmp_path, str(EXAMPLE), "--git", "--print-unit")
    assert result.exit_code == 0, result.output
    assert exec_start(result).endswith(" --git") and "--watch" not in exec_start(result)


def test_contradictions_are_one_line_and_exit_2(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(EXAMPLE.read_text())
    for args, said in (
        ((str(EXAMPLE), "--watch", str(other)), "give the spec once"),
        (("--git", "https://example.org/ops.git", "--watch", str(EXAMPLE)), "--git URL follows a repository"),
        ((), "give the spec: FILE, --watch FILE or --git URL"),
        (("--watch", str(tmp_path / "missing.yaml")), "no such file"),
    ):
        result = serve(tmp_path, *args)
        assert result.exit_code == 2 and said in result.stderr and result.stderr.count("\n") == 1, (args, result.output)
