"""A fleet of three hosts following one repository served by a real `git daemon`: each host its own
`conduit watch --git --fleet --host` and `conduit serve`, its own state and nodes on the private
engine. A change to a base reaches all three; a commit that breaks one host is rolled back there
only and `conduit fleet status` says so; the canary ring takes a commit before the stable ring; a
host whose policy requires signed commits refuses an unsigned or wrongly signed one."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from conduit.state.stores import open_state
from harness import free_port_block, wait_for
from tests.helpers import cli_env, stand_in_policy
from tests.integration.test_apply import Cluster

pytestmark = pytest.mark.integration

EMAIL = "ops@example.net"
# Agents listen on distinct loopback addresses, not in network namespaces: the git daemon, the
# Docker daemon's socket and the nodes' metrics ports stay reachable without a bridge per host.
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


def run(*argv: str, cwd: Path | None = None) -> str:
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout.strip()


class Repo:
    """A work tree pushing to a bare repository that a git daemon serves on the loopback."""

    def __init__(self, tmp: Path, key: Path):
        self.bare, self.work, self.key = tmp / "served" / "fleet.git", tmp / "work", key
        self.bare.parent.mkdir()
        run("git", "init", "-q", "--bare", "-b", "main", str(self.bare))
        run("git", "init", "-q", "-b", "main", str(self.work))
        self.port = free_port_block(1)
        self.daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={self.bare.parent}",
                                        "--listen=127.0.0.1", f"--port={self.port}", str(self.bare.parent)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_for(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1).close() or True, timeout=10, message="git daemon")
        self.url = f"git://127.0.0.1:{self.port}/fleet.git"

    def write(self, rel: str, data: dict) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def commit(self, message: str, refs: tuple[str, ...] = ("main", "stable"), key: Path | None | str = "default") -> str:
        key = self.key if key == "default" else key
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "-c", "commit.gpgsign=true"] if key else ["-c", "commit.gpgsign=false"]
        git = ["git", "-C", str(self.work), "-c", "user.name=ops", "-c", f"user.email={EMAIL}", *sign]
        run(*git, "add", "-A")
        run(*git, "commit", "-qm", message)
        sha = run("git", "-C", str(self.work), "rev-parse", "HEAD")
        for ref in refs:
            run("git", "-C", str(self.work), "push", "-q", "-f", str(self.bare), f"HEAD:refs/heads/{ref}")
        return sha

    def close(self) -> None:
        self.daemon.send_signal(signal.SIGTERM)
        self.daemon.wait(timeout=10)


class Host:
    """One host: its cluster (state, root, nodes), its watcher and its agent."""

    def __init__(self, name: str, cluster: Cluster, address: str, port: int):
        self.name, self.cluster, self.address, self.port = name, cluster, address, port
        self.processes: list[subprocess.Popen] = []
        self.env = cli_env()

    def start(self, argv: list[str]) -> None:
        self.processes.append(subprocess.Popen(self.cluster.argv(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               stdin=subprocess.DEVNULL, text=True, env=self.env))  # fmt: skip

    def watch(self) -> dict:
        try:
            return json.loads((self.cluster.state / "watch.json").read_text())
        except (OSError, ValueError):
            return {}

    def max_clients(self) -> str | None:
        try:
            command = self.cluster.command_of(f"{self.cluster.prefix}-1")
        except Exception:
            return None
        return command[command.index("--max-clients") + 1] if "--max-clients" in command else command[2]

    def at(self, commit: str, max_clients: int) -> bool:
        status = self.watch()
        return status.get("applied_commit") == commit and self.max_clients() == str(max_clients)

    def stop(self) -> str:
        err = ""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                err += process.communicate(timeout=120)[1]
            except subprocess.TimeoutExpired:
                process.kill()
                err += process.communicate()[1]
        return err


def signing_keys(tmp: Path) -> tuple[Path, Path, Path]:
    """An allowed key, another key, and the allowed signers file naming the first."""
    for name in ("allowed", "other"):
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(tmp / name))
    signers = tmp / "allowed_signers"
    signers.write_text(f"{EMAIL} {(tmp / 'allowed.pub').read_text()}")
    return tmp / "allowed", tmp / "other", signers


def node_spec(cluster: Cluster, max_clients: int) -> dict:
    cluster.write(count=1, max_clients=max_clients)
    return yaml.safe_load(cluster.spec.read_text())


@pytest.fixture
def fleet(tmp_path, docker_engine, standin_image, docker_cleanup):
    keys = tmp_path / "keys"
    keys.mkdir()
    allowed, other, signers = signing_keys(keys)
    repo = Repo(tmp_path, allowed)
    hosts = []
    ports = free_port_block(4)
    for i, address in enumerate(ADDRESSES):
        folder = tmp_path / f"h{i + 1}"
        folder.mkdir()
        cluster = Cluster(folder, docker_engine, standin_image, docker_cleanup.name(f"fl{i + 1}"), free_port_block(12))
        hosts.append(Host(f"h{i + 1}", cluster, address, ports + i))
    # Host 3's policy requires commits signed by the allowed key.
    policy = tmp_path / "signed-policy.yaml"
    policy.write_text(Path(stand_in_policy()).read_text() + f"git: {{require_signed_commits: true, allowed_signers: {signers}}}\n")
    policy.chmod(0o600)
    hosts[2].env["CONDUIT_POLICY"] = str(policy)
    yield repo, hosts, other
    errors = [h.stop() for h in hosts]
    repo.close()
    assert not any("Traceback" in e for e in errors), errors


def write_fleet(repo: Repo, hosts: list[Host], max_clients: int, silent: int) -> None:
    """base/node.yaml holds what every host shares; hosts/hN.yaml extends it with the host's names and ports."""
    base = node_spec(hosts[0].cluster, max_clients)
    base.pop("metadata")
    del base["spec"]["containers"]["naming"], base["spec"]["conduit"]["metrics_port_base"]
    repo.write("base/node.yaml", base)
    entries = []
    for i, host in enumerate(hosts):
        own = node_spec(host.cluster, max_clients)
        repo.write(f"hosts/{host.name}.yaml", {
            "extends": ["../base/node.yaml"], "metadata": own["metadata"],
            "spec": {"containers": {"naming": own["spec"]["containers"]["naming"]},
                     "conduit": {"metrics_port_base": own["spec"]["conduit"]["metrics_port_base"]}},
        })  # fmt: skip
        entries.append({"name": host.name, "spec": f"hosts/{host.name}.yaml", "agent": f"http://{host.address}:{host.port}",
                        "labels": {"provider": "lab", "region": f"r{i}", "ring": "canary" if i == 0 else "stable"}})
    # A fourth host whose agent listens but never answers.
    entries.append({"name": "h4", "spec": "hosts/h1.yaml", "agent": f"http://127.0.0.1:{silent}"})
    repo.write("fleet.yaml", {"apiVersion": "conduit.psiphon.ca/v1alpha1", "kind": "ConduitFleet",
                              "rings": {"canary": "main", "stable": "stable"}, "default_ring": "stable", "hosts": entries})  # fmt: skip


def fleet_status(repo: Repo, host: Host, tokens: Path) -> dict:
    done = host.cluster.run("fleet", "status", str(repo.work / "fleet.yaml"), "--tokens", str(tokens), "--timeout", "2", "--json")
    assert done.returncode in (0, 1), done.stderr
    return {row["host"]: row for row in json.loads(done.stdout)["hosts"]}


def test_three_hosts_follow_one_repository(fleet, tmp_path):
    repo, hosts, other_key = fleet
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel accepts connections; nobody ever answers
    write_fleet(repo, hosts, 40, silent.getsockname()[1])
    first = repo.commit("three hosts")
    for host in hosts:
        host.start(["watch", "--git", repo.url, "--ref", "main", "--fleet", "fleet.yaml", "--host", host.name,
                    "--poll", "0.5", "--jitter", "0.2", "--interval", "300"])  # fmt: skip
    for host in hosts:
        wait_for(lambda: host.at(first, 40), timeout=90, message=f"{host.name} applied the first commit")
    # The generation records the commit and the merged spec: no base is read again on a rollback.
    generation = open_state(hosts[0].cluster.state).history.generations()[-1]
    assert generation.git_commit == first and "extends" not in yaml.safe_load(generation.spec_text) and "max_clients: 40" in generation.spec_text

    tokens = tmp_path / "fleet-tokens.yaml"
    lines = []
    for host in hosts:
        made = host.cluster.run("tokens", "create", "fleet", "--role", "viewer")
        assert made.returncode == 0, made.stderr
        lines.append(f"{host.name}: {{viewer: {made.stdout.strip()}, agent: 'http://{host.address}:{host.port}'}}")
        host.start(["serve", str(host.cluster.state / "fleet-spec.yaml"), "--listen", host.address, "--port", str(host.port), "--interval", "1"])
    tokens.write_text("\n".join(lines) + f"\nh4: {{viewer: nobody-answers, agent: 'http://127.0.0.1:{silent.getsockname()[1]}'}}\n")
    tokens.chmod(0o600)

    # A commit to the base changes all three.
    write_fleet(repo, hosts, 41, silent.getsockname()[1])
    based = repo.commit("every node takes 41 clients")
    for host in hosts:
        wait_for(lambda: host.at(based, 41), timeout=90, message=f"{host.name} applied the base change")

    # The canary ring (main) takes a commit the stable ring has not seen, until stable moves.
    write_fleet(repo, hosts, 42, silent.getsockname()[1])
    canary = repo.commit("42 clients, canary first", refs=("main",))
    wait_for(lambda: hosts[0].at(canary, 42), timeout=90, message="the canary applied")
    for host in hosts[1:]:
        assert host.at(based, 41) and host.watch().get("attempted_commit") == based
    run("git", "-C", str(repo.work), "push", "-q", str(repo.bare), "main:stable")
    for host in hosts[1:]:
        wait_for(lambda: host.at(canary, 42), timeout=90, message=f"{host.name} applied once stable moved")

    # A commit that breaks host 2 is rolled back there only; the others find their spec unchanged.
    broken = yaml.safe_load((repo.work / "hosts/h2.yaml").read_text())
    broken["spec"]["containers"]["env"] = {"STANDIN_EXIT_AFTER": "0"}
    repo.write("hosts/h2.yaml", broken)
    bad = repo.commit("h2 nodes that exit")
    wait_for(lambda: hosts[1].watch().get("last_result") == "rolled_back" and hosts[1].watch().get("attempted_commit") == bad,
             timeout=120, message="host 2 rolled back")  # fmt: skip
    for host in (hosts[0], hosts[2]):
        wait_for(lambda: host.at(bad, 42), timeout=60, message=f"{host.name} took the commit (its spec unchanged)")
    assert hosts[1].at(canary, 42)
    assert [g.outcome for g in open_state(hosts[1].cluster.state).history.generations()][-1] == "rolled_back"
    assert len(open_state(hosts[0].cluster.state).history.generations()) == 3  # the commit changed nothing on host 1

    def status_settled():
        rows = fleet_status(repo, hosts[0], tokens)
        # an agent's answer is its last observation of the host (every second): wait for the one after the rollback
        return rows if rows["h1"]["ready"] and rows["h3"]["ready"] and rows["h2"]["attempted"] == bad else None

    rows = wait_for(status_settled, timeout=60, message="fleet status with hosts 1 and 3 ready")
    assert (rows["h1"]["applied"], rows["h3"]["applied"], rows["h2"]["applied"], rows["h2"]["attempted"]) == (bad, bad, canary, bad)
    assert not rows["h2"]["ready"] and "rolled_back" in rows["h2"]["why"] and rows["h2"]["last_error"]
    assert rows["h1"]["ring"] == "canary" and rows["h2"]["ring"] == "stable"
    assert (rows["h1"]["nodes_up"], rows["h1"]["nodes"]) == (1, 1)
    assert not rows["h4"]["answered"] and rows["h4"]["why"] == "no answer within 2 s"
    table = hosts[0].cluster.run("fleet", "status", str(repo.work / "fleet.yaml"), "--tokens", str(tokens), "--timeout", "2")
    assert table.returncode == 1 and "no answer" in table.stdout and bad[:12] in table.stdout

    # Host 3 requires signed commits: an unsigned one and one signed by another key are refused there.
    write_fleet(repo, hosts, 43, silent.getsockname()[1])  # host 2's nodes are mended too
    unsigned = repo.commit("43 clients, unsigned", key=None)
    for host in hosts[:2]:
        wait_for(lambda: host.at(unsigned, 43), timeout=90, message=f"{host.name} applied the unsigned commit (no policy asks)")
    wait_for(lambda: hosts[2].watch().get("last_result") == "blocked", timeout=60, message="host 3 refused the unsigned commit")
    assert "is not signed by a key in" in hosts[2].watch()["last_error"] and hosts[2].at(bad, 42)
    write_fleet(repo, hosts, 44, silent.getsockname()[1])
    wrong = repo.commit("44 clients, another key", key=other_key)
    wait_for(lambda: hosts[2].watch().get("attempted_commit") == wrong, timeout=60, message="host 3 saw the wrongly signed commit")
    assert hosts[2].watch()["last_result"] == "blocked" and hosts[2].at(bad, 42)
    write_fleet(repo, hosts, 45, silent.getsockname()[1])
    signed = repo.commit("45 clients, signed")
    wait_for(lambda: hosts[2].at(signed, 45), timeout=90, message="host 3 applied the signed commit")
    silent.close()
