"""A repository URL's credentials never reach a message, a log line or the state."""

from __future__ import annotations

import pytest

from conduit.errors import GitError
from conduit.state.git import fetch, public_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bot:ghp_s3cret@github.com/o/specs.git", "https://***@github.com/o/specs.git"),
        ("https://ghp_s3cret@github.com/o/specs.git", "https://***@github.com/o/specs.git"),
        ("ssh://git@example.org:2222/specs.git", "ssh://***@example.org:2222/specs.git"),
        ("https://github.com/o/specs.git", "https://github.com/o/specs.git"),
        ("/srv/specs.git", "/srv/specs.git"),
        ("fatal: unable to access 'https://u:p@h/x/': refused", "fatal: unable to access 'https://***@h/x/': refused"),
    ],
)
def test_public_url_leaves_out_user_and_password(url, shown):
    assert public_url(url) == shown


def test_a_failed_fetch_does_not_show_the_password(tmp_path):
    with pytest.raises(GitError) as caught:
        fetch("https://bot:ghp_s3cret@127.0.0.1:9/specs.git", "main", tmp_path / "mirror", most=1 << 28)
    assert "ghp_s3cret" not in str(caught.value) and "bot:" not in str(caught.value)


# ---------------------------------------------------------------- credentials by file, never inline

import base64  # noqa: E402
import functools  # noqa: E402
import http.server  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from click.testing import CliRunner  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conduit.cli.root import main  # noqa: E402
from conduit.state.git import without_password  # noqa: E402

USER, TOKEN = "bot", "ghp_s3cret/+:%"


def print_unit(tmp_path, *args: str):
    return CliRunner().invoke(main, ["--state-dir", str(tmp_path), "watch", *args, "--print-unit"])


def test_the_printed_unit_names_a_credentials_file_never_the_password(tmp_path):
    result = print_unit(tmp_path, "--git", "https://bot:ghp_s3cret@github.com/o/specs.git")
    assert result.exit_code == 0, result.output
    assert "ghp_s3cret" not in result.stdout and "bot" not in result.stdout
    assert "--git https://github.com/o/specs.git" in result.stdout
    assert "--git-credentials-file /etc/conduit/secrets/git-credentials" in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith("warning: the password in the URL is not written into the unit; put `https://USER:PASSWORD@github.com`")
    assert "ghp_s3cret" not in line


def test_a_named_credentials_file_goes_into_the_unit_and_a_url_without_password_stays_as_it_is(tmp_path):
    given_file = tmp_path / "creds"
    result = print_unit(tmp_path, "--git", "https://github.com/o/specs.git", "--git-credentials-file", str(given_file))
    assert result.exit_code == 0 and result.stderr == ""
    assert "--git https://github.com/o/specs.git --ref main" in result.stdout and f"--git-credentials-file {given_file}" in result.stdout
    plain = print_unit(tmp_path, "--git", "ssh://git@example.org/specs.git")
    assert "--git ssh://git@example.org/specs.git" in plain.stdout and "--git-credentials-file" not in plain.stdout and plain.stderr == ""


@given(st.text(st.characters(codec="ascii", exclude_characters="@/?#\\ \t\r\n%[]"), min_size=1, max_size=20))
def test_without_password_never_keeps_a_password(password):
    url = f"https://user:{password}@example.org/o/specs.git"
    assert without_password(url) == "https://example.org/o/specs.git"  # user and password both gone, whatever the password holds


class _Dumb(http.server.SimpleHTTPRequestHandler):
    """git's dumb HTTP protocol: a bare repository served as files, behind Basic authentication."""

    def do_GET(self):  # noqa: N802 - the stdlib's name
        expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="specs"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_repo(tmp_path):
    """A bare repository with one commit, served over http on the loopback with a password."""
    bare, work = tmp_path / "srv" / "specs.git", tmp_path / "work"
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run([*git, "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    (work / "cluster.yaml").write_text("spec: {}\n")
    subprocess.run([*git, "-C", str(work), "add", "cluster.yaml"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-qm", "first"], check=True)
    subprocess.run([*git, "-C", str(work), "push", "-q", "origin", "HEAD:main"], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    sha = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Dumb, directory=str(tmp_path / "srv")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/specs.git", sha
    server.shutdown()
    server.server_close()


def credentials_file(tmp_path, url: str, mode: int = 0o600) -> Path:
    from urllib.parse import quote

    path = tmp_path / "git-credentials"
    host = url.split("/")[2]
    path.write_text(f"https://other:x@example.org\nhttp://{USER}:{quote(TOKEN, safe='')}@{host}\n")
    path.chmod(mode)
    return path


def test_watch_fetches_with_the_credentials_file(tmp_path, http_repo, monkeypatch):
    url, sha = http_repo
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    with pytest.raises(GitError):
        fetch(url, "main", tmp_path / "mirror-none", most=1 << 28)  # the server wants the password
    path = credentials_file(tmp_path, url)
    assert fetch(url, "main", tmp_path / "mirror", path, most=1 << 28) == sha
    mirror_files = b"".join(p.read_bytes() for p in (tmp_path / "mirror").rglob("*") if p.is_file())
    assert TOKEN.encode() not in mirror_files  # nothing of it is kept in the mirror


def test_a_credentials_file_others_can_read_is_refused_in_one_line(tmp_path, http_repo):
    url, _ = http_repo
    path = credentials_file(tmp_path, url, 0o644)
    with pytest.raises(GitError) as caught:
        fetch(url, "main", tmp_path / "mirror", path, most=1 << 28)
    assert str(caught.value) == f"git credentials file {path}: must be a file owned by root and readable by no one else; chmod 600 {path}"


def test_a_credentials_file_without_a_line_for_the_host_says_what_to_add(tmp_path):
    path = tmp_path / "git-credentials"
    path.write_text("https://bot:x@example.org\n")
    path.chmod(0o600)
    with pytest.raises(GitError, match=r"no line for https://github.com; add `https://USER:TOKEN@github.com`"):
        fetch("https://github.com/o/specs.git", "main", tmp_path / "mirror", path, most=1 << 28)


def test_a_token_given_as_the_urls_user_is_not_written_into_the_unit(tmp_path):
    """GitHub and others take a token alone as the user of an https URL: it is a password all the same."""
    result = print_unit(tmp_path, "--git", "https://ghp_s3cret@github.com/o/specs.git")
    assert result.exit_code == 0, result.output
    assert "ghp_s3cret" not in result.stdout and "ghp_s3cret" not in result.stderr
    assert "--git https://github.com/o/specs.git" in result.stdout
    assert "--git-credentials-file /etc/conduit/secrets/git-credentials" in result.stdout


class _Held(_Dumb):
    """The dumb server, holding git's first request until the test has looked at every process's command line."""

    asked: threading.Event
    looked: threading.Event

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.asked.set()
        self.looked.wait(timeout=30)
        super().do_GET()


def test_a_password_in_the_url_never_reaches_gits_command_line(tmp_path, http_repo):
    """Any local user reads /proc/PID/cmdline: the URL's user and password go to git as a header in its
    environment (root's alone), as a credentials file's do, and git is handed the URL without them."""
    from urllib.parse import quote

    url, sha = http_repo
    srv = tmp_path / "srv"
    asked, looked = threading.Event(), threading.Event()
    handler = type("Held", (_Held,), {"asked": asked, "looked": looked})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(srv)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    inline = f"http://{USER}:{quote(TOKEN, safe='')}@127.0.0.1:{server.server_port}/specs.git"
    fetched: list[str] = []
    run = threading.Thread(target=lambda: fetched.append(fetch(inline, "main", tmp_path / "mirror", most=1 << 28)))
    run.start()
    try:
        assert asked.wait(timeout=30), "git never asked the server"
        lines = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                lines.append(cmdline.read_bytes())
            except OSError:
                pass
    finally:
        looked.set()
        run.join(timeout=60)
        server.shutdown()
        server.server_close()
    assert fetched == [sha]
    gits = [line for line in lines if b"specs.git" in line and b"git" in line.split(b"\0")[0]]
    assert gits, "no git process was seen while it fetched"
    assert not [line for line in gits if quote(TOKEN, safe="").encode() in line or f"{USER}:".encode() in line], gits


def test_a_user_alone_is_given_to_gits_credential_helpers_not_sent_with_an_empty_password():
    """`https://user@host/…` with a credential helper for the password: git asks the helper with that user."""
    from conduit.state.git import credentials_env

    env = credentials_env("https://olu@git.example/o/specs.git", None)
    assert env == {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "credential.https://git.example.username", "GIT_CONFIG_VALUE_0": "olu"}
    assert "Authorization" not in str(credentials_env("https://olu@git.example/o/specs.git", None))
    assert credentials_env("https://git.example/o/specs.git", None) == {} == credentials_env("ssh://git@git.example/o/specs.git", None)
