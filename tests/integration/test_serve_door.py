"""A real `conduit serve` (uvicorn) on the loopback, as any local process reaches it: a body
without a token is refused before it is read (the agent's memory stays where it was), a body
over the limit is cut, a forged X-Forwarded-For changes nothing, and bad headers are a 4xx.
No Docker daemon is needed: the agent serves (and refuses) while its observation fails."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from harness import free_port_block, wait_for
from tests.helpers import CONDUIT, EXAMPLE, cli_env
from conduit.state.stores import open_state

pytestmark = pytest.mark.integration
BLOCK = b"a" * (1 << 16)
RSS_GROWTH_LIMIT_KIB = 16 << 10


class Served:
    def __init__(self, tmp: Path, *extra: str):
        self.state_dir = tmp / "state"
        self.port = free_port_block(1)
        self.argv = [*CONDUIT, "--docker-host", f"unix://{tmp}/no-docker.sock", "--state-dir", str(self.state_dir)]
        self.tokens = {role: self._token(role) for role in ("operator", "viewer")}
        self.process = subprocess.Popen([*self.argv, "serve", str(EXAMPLE), "--port", str(self.port), *extra], env=cli_env(),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(self._answers, timeout=30, message="conduit serve listening")

    def _token(self, role: str) -> str:
        made = subprocess.run([*self.argv, "tokens", "create", f"t-{role}", "--role", role], capture_output=True, text=True, env=cli_env())
        assert made.returncode == 0, made.stderr
        return made.stdout.strip()

    def _answers(self) -> bool:
        try:
            return httpx.get(self.base + "/api/v1/summary", timeout=2).status_code == 401
        except httpx.TransportError:
            return False

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def audit(self) -> list[dict]:
        return open_state(self.state_dir).audit.recent(1000)

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return err


@pytest.fixture
def served(tmp_path):
    started = []

    def start(*extra: str) -> Served:
        started.append(Served(tmp_path, *extra))
        return started[-1]

    yield start
    for s in started:
        err = s.stop()
        assert "Traceback" not in err, err


def post_raw(port: int, mib: int, chunked: bool, token: str | None = None) -> tuple[int, int]:
    """POST `mib` MiB to /api/v1/apply over a raw socket, as fast as the agent takes it; (status, MiB it took)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        head = "POST /api/v1/apply HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n"
        head += f"Authorization: Bearer {token}\r\n" if token else ""
        head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {mib << 20}\r\n\r\n"
        sock.sendall(head.encode())
        sent = 0
        try:
            while sent < mib << 20:
                sock.sendall(b"%x\r\n%s\r\n" % (len(BLOCK), BLOCK) if chunked else BLOCK)
                sent += len(BLOCK)
            sock.sendall(b"0\r\n\r\n" if chunked else b"")
        except OSError:
            pass  # the agent answered and closed: the rest of the body was never read
        status = sock.recv(64).split(b" ", 2)[1]
    return int(status), sent >> 20


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_large_body_is_refused_before_it_is_read(served, chunked):
    agent = served()
    for mib, token, expected in ((64, None, 401), (256, None, 401), (256, agent.tokens["viewer"], 403), (256, agent.tokens["operator"], 413)):
        before = agent.rss_kib()
        status, taken = post_raw(agent.port, mib, chunked, token)
        grew = agent.rss_kib() - before
        print(f"\n{'chunked' if chunked else 'content-length'} {mib} MiB, token {token is not None}: {status} after {taken} MiB sent; "
              f"agent RSS {before} -> {before + grew} KiB (+{grew})")  # fmt: skip
        assert status == expected and grew < RSS_GROWTH_LIMIT_KIB
        assert taken < 64  # the socket was closed long before the whole body went in


def test_a_forged_x_forwarded_for_neither_escapes_the_rate_nor_fills_the_audit_log(served):
    agent = served("--rate", "5")
    began = time.monotonic()
    with httpx.Client(base_url=agent.base, timeout=10) as client:
        codes = [client.get("/api/v1/nodes", headers={"X-Forwarded-For": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}).status_code
                 for i in range(1000)]  # fmt: skip
    seconds = time.monotonic() - began
    minutes = seconds / 60
    refused = [r for r in agent.audit() if r["event"] == "api.refused"]
    print(f"\n1000 requests with a fresh X-Forwarded-For in {seconds:.1f} s: {codes.count(401)} x 401, {codes.count(429)} x 429; "
          f"{len(refused)} audit rows")  # fmt: skip
    # One client's allowance: a burst of 10, then 5 a second for as long as the requests took.
    assert set(codes) == {401, 429} and codes.count(401) <= 10 + 5 * seconds + 5
    assert {r["detail"]["client"] for r in refused} == {"127.0.0.1"}
    # Ten rows at once, one a minute after that, and one that says the rest is not written.
    assert len(refused) <= 10 + 2 * (1 + int(minutes))


def test_bad_headers_are_a_4xx(served):
    agent = served()
    viewer = {"Authorization": f"Bearer {agent.tokens['viewer']}"}
    with httpx.Client(base_url=agent.base, timeout=10) as client:
        for value in ("²".encode(), b"1e3", b"-1", b"9" * 40, "١".encode()):
            answer = client.get("/api/v1/events", headers={**viewer, "Last-Event-ID": value})
            assert answer.status_code == 400 and "Last-Event-ID" in answer.json()["detail"]
        assert client.get("/api/v1/generations/99999999999999999999", headers=viewer).status_code == 422
        assert client.get("/api/v1/audit?limit=-5", headers=viewer).status_code == 422
        assert client.get("/api/v1/nodes", headers={"Authorization": "Bearer \xff\xfe".encode("latin-1")}).status_code == 401


def test_an_operator_cannot_choose_the_spec_with_a_saved_plan(served, tmp_path):
    from tests.unit.test_serve import _saved_plan

    agent = served()
    other = _saved_plan(EXAMPLE.read_text().replace("edge-1", "edge-9"), str(tmp_path / "other.yaml"))
    answer = httpx.post(agent.base + "/api/v1/apply", json={"plan": other}, timeout=30,
                        headers={"Authorization": f"Bearer {agent.tokens['operator']}"})  # fmt: skip
    assert answer.status_code == 403 and "another spec" in answer.json()["detail"]
    row = agent.audit()[0]
    assert (row["event"], row["user"], row["detail"]["status"]) == ("api.apply", "t-operator", 403)
    assert open_state(agent.state_dir).history.generations() == []
