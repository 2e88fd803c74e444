"""The private nginx starts with the stream module and proxies TCP to a stand-in backend."""

from __future__ import annotations

import os
import socket

import pytest

from harness import free_port, metric, scrape, wait_for

pytestmark = pytest.mark.integration


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(200)
        if not chunk:
            break
        data += chunk
    return data


def test_private_nginx_has_stream_module(nginx_server):
    conf = nginx_server.main_conf.read_text()
    assert conf.startswith("load_module /usr/lib/nginx/modules/ngx_stream_module.so;")
    assert f"pid {nginx_server.pid_file};" in conf
    assert nginx_server.master_pid() is not None
    assert int(nginx_server.pid_file.read_text()) == nginx_server.master_pid()
    assert nginx_server.test_config().returncode == 0
    assert nginx_server.include_dir.is_dir() and not any(nginx_server.include_dir.iterdir())

    # a stream block only parses when the module is loaded
    path = nginx_server.write_include("probe.conf", "stream { server { listen 127.0.0.1:%d; return ok; } }\n"
                                      % free_port())
    nginx_server.add_main(f"include {path};")
    nginx_server.test_config()
    nginx_server.reload()


def test_stream_proxy_to_standin_backend(nginx_server, docker_engine, standin_image, published_ports):
    backend_port, metrics_port, front_port = free_port(), free_port(), free_port()
    docker_engine.client.containers.run(
        standin_image,
        ["start", "-d", "/home/conduit/data", "--metrics-addr", ":9090"],
        environment={"STANDIN_LISTEN": "tcp:8443"},
        hostname="backend-b",
        ports={"8443/tcp": ("127.0.0.1", backend_port), "9090/tcp": ("127.0.0.1", metrics_port)},
        detach=True,
    )
    wait_for(lambda: scrape(metrics_port), message="stand-in metrics")

    path = nginx_server.write_include("conduit-lb.conf", f"""
stream {{
    upstream conduit_tcp {{
        server 127.0.0.1:{backend_port};
    }}
    server {{
        listen 127.0.0.1:{front_port};
        proxy_pass conduit_tcp;
        proxy_connect_timeout 2s;
    }}
}}
""")
    nginx_server.add_main(f"include {path};")
    nginx_server.reload()

    with socket.create_connection(("127.0.0.1", front_port), timeout=5) as s:
        assert read_line(s) == b"standin backend-b 8443\n"
        s.sendall(b"through nginx\n")
        assert read_line(s) == b"through nginx\n"
        wait_for(lambda: metric(scrape(metrics_port), "conduit_connected_clients") == 1,
                 message="the proxied connection counted as a client")

    # a broken config is refused by test_config and reload keeps the old one running
    nginx_server.add_main("this is not nginx;")
    assert nginx_server.test_config(check=False).returncode != 0
    with pytest.raises(Exception):
        nginx_server.reload()
    assert nginx_server.master_pid() is not None
    assert os.path.exists(nginx_server.error_log)
