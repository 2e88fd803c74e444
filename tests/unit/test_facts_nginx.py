"""conduit.facts.nginx on nginx's own output: `nginx -V`, `nginx -T` of a config with a stream
block, and Debian's nginx.conf (tests/fixtures/facts/nginx/README.md says how each was captured)."""

from __future__ import annotations

from pathlib import Path

from conduit.facts.nginx import (
    include_pattern,
    managed_listens,
    names_nginx,
    pidfile_pid,
    statements,
    stream_compiled_in,
)
from conduit.render.nginx import render_stream_conf
from conduit.spec.load import load_file
from tests.helpers import EXAMPLE, SMALL_VPS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "nginx"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def dumped_files(dump: str) -> dict[str, str]:
    """`nginx -T`'s dump split into its files, by the comment nginx writes before each."""
    files: dict[str, list[str]] = {}
    current: list[str] = []
    for line in dump.splitlines():
        if line.startswith("# configuration file ") and line.endswith(":"):
            current = files.setdefault(line[len("# configuration file ") : -1], [])
        else:
            current.append(line)
    return {name: "\n".join(lines) + "\n" for name, lines in files.items()}


def test_statements_track_depth_comments_and_quotes():
    text = "a 1; # b {\nhttp {\n  log_format x '{ ; }' \"$a\";\n  server { listen 80; }\n}\nstream {}\n"
    got = [(s.depth, s.words[0], s.block, s.line) for s in statements(text)]
    assert got == [(0, "a", False, 1), (0, "http", True, 2), (1, "log_format", False, 3), (1, "server", True, 4),
                   (2, "listen", False, 4), (0, "stream", True, 6)]
    assert statements("set $x ${y}z;")[0].words == ("set", "$x", "${y}z")


def test_debian_nginx_conf():
    found = statements(fixture("debian-nginx.conf"))
    main = [(s.words, s.line) for s in found if s.depth == 0 and not s.block]
    assert (("include", "/etc/nginx/modules-enabled/*.conf"), 5) in main
    assert (("pid", "/run/nginx.pid"), 3) in main
    blocks = [s.words[0] for s in found if s.depth == 0 and s.block]
    assert blocks == ["events", "http"]  # the mail example is commented out
    ssl = next(s for s in found if s.words[0] == "ssl_protocols")
    assert ssl.depth == 1 and ssl.words[1:] == ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")  # the trailing comment is no word


def test_nginx_T_dump_of_a_stream_config():
    dump = fixture("dump-stream.txt")
    files = dumped_files(dump)
    assert len(files) == 3
    module = next(text for name, text in files.items() if name.endswith("50-mod-stream.conf"))
    assert [s.words for s in statements(module)] == [("load_module", "modules/ngx_stream_module.so")]
    main = next(text for name, text in files.items() if name.endswith("/nginx.conf"))
    top = [(s.words[0], s.block) for s in statements(main) if s.depth == 0]
    assert ("stream", True) in top and ("worker_rlimit_nofile", False) in top
    assert next(s for s in statements(main) if s.words[0] == "set").words == ("set", "$x", "${host}a b")
    stream = next(text for name, text in files.items() if name.endswith("/stream.conf"))
    assert managed_listens(stream) == {("udp", 5566), ("tcp", 443)}
    # the whole dump reads as one text too: nginx's comments are comments
    assert sum(1 for s in statements(dump) if s.words[0] == "listen") == 3


def test_stream_compiled_in():
    assert stream_compiled_in("configure arguments: --prefix=/x --with-stream --with-http_ssl_module")
    assert not stream_compiled_in("configure arguments: --with-stream=dynamic --with-stream_ssl_module")


def test_debian_nginx_builds_stream_as_a_module():
    version = fixture("version.txt")
    assert version.startswith("nginx version: nginx/1.22.1")
    assert "--with-stream=dynamic" in version.split()
    assert not stream_compiled_in(version)


def test_managed_listens():
    assert managed_listens(render_stream_conf(load_file(EXAMPLE, SMALL_VPS))) == {("tcp", 443), ("udp", 5566)}
    assert managed_listens("    listen 127.0.0.1:9000 udp reuseport;\n") == {("udp", 9000)}


def test_include_pattern():
    assert include_pattern("/etc/nginx", "modules-enabled/*.conf") == "/etc/nginx/modules-enabled/*.conf"
    assert include_pattern("/etc/nginx", "/etc/nginx/conduit/stream.conf") == "/etc/nginx/conduit/stream.conf"


def test_pidfile_pid():
    assert pidfile_pid(fixture("nginx.pid")) == 19316
    assert pidfile_pid("1234\n") == 1234
    assert pidfile_pid("0\n") is None
    assert pidfile_pid("-5") is None
    assert pidfile_pid("") is None
    assert pidfile_pid("nginx") is None


def test_names_nginx():
    assert names_nginx((FIXTURES / "master-cmdline.bin").read_bytes())
    assert names_nginx(b"nginx: master process /usr/sbin/nginx -g daemon on; master_process on;\0")
    assert not names_nginx(b"sleep\x0030\0")
