"""A private Docker daemon for integration tests.

``DockerEngine`` starts its own ``dockerd`` on a unix socket in a short temp
directory, with its own data root, exec root (and so its own containerd) and its
own bridge interface and address pool, so it never shares container IPs with
another engine running on the same machine. ``stop()`` removes every container,
stops the daemon, undoes its mounts, iptables rules and bridge, and deletes the
directory.
"""

from __future__ import annotations

import atexit
import fcntl
import ipaddress
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

STANDIN_DIR = Path(__file__).resolve().parent.parent / "standin"
BUILD_SCRIPT = STANDIN_DIR / "build"
START_LOCK = Path("/tmp/cdk-start.lock")


class EngineUnavailable(RuntimeError):
    """The engine cannot run on this machine (missing binary, not root, start failure)."""


class StandinBuildError(RuntimeError):
    """tests/standin/build failed."""


def _proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pid_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def foreign_engines(exclude_dir: str | None = None) -> list[tuple[int, str]]:
    """dockerd/containerd processes running on this machine that are not ours."""
    found = []
    for pid in _all_pids():
        comm = _pid_comm(pid)
        if comm not in ("dockerd", "containerd"):
            continue
        cmd = " ".join(_proc_cmdline(pid))
        if exclude_dir and exclude_dir in cmd:
            continue
        found.append((pid, cmd))
    return found


def _routes() -> list[ipaddress.IPv4Network]:
    nets = []
    try:
        out = subprocess.run(["ip", "-4", "-j", "route", "show", "table", "all"],
                             capture_output=True, text=True, check=True).stdout
        for route in json.loads(out or "[]"):
            dst = route.get("dst", "")
            if dst in ("", "default"):
                continue
            try:
                nets.append(ipaddress.IPv4Network(dst, strict=False))
            except ValueError:
                pass
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    """A free 10.X.0.0/16 for the bridge (first /24) and the address pool (upper /17)."""
    taken = _routes()
    for meta in Path("/tmp").glob("cdk*/engine.json"):
        try:
            taken.append(ipaddress.IPv4Network(json.loads(meta.read_text())["subnet"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    candidates = list(range(160, 251))
    random.shuffle(candidates)
    for x in candidates:
        net = ipaddress.IPv4Network(f"10.{x}.0.0/16")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise EngineUnavailable("no free 10.160-250.0.0/16 range for a private bridge")


@contextmanager
def _start_lock(mode: int):
    with open(START_LOCK, "a") as lock:
        fcntl.flock(lock, mode)
        yield


def _one_start_at_a_time():
    """Engines starting at once (pytest workers, other runs) take turns: each picks its subnet seeing
    the others' engine.json and bridge, and dockerd's start deletes and creates again the iptables
    chains all engines share (two at once fail with `iptables -N DOCKER: Chain already exists`)."""
    return _start_lock(fcntl.LOCK_EX)


def no_engine_starting():
    """Held while containers publish ports or bridge networks are made (shared with other holders):
    an engine starting meanwhile deletes the shared nat DOCKER chain for a moment, and the port
    mapping fails ("driver failed programming external connectivity ... No chain/target/match")."""
    return _start_lock(fcntl.LOCK_SH)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _mounts_under(directory: str) -> list[str]:
    result = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) < 5:
                    continue
                mnt = fields[4].replace("\\040", " ")
                if mnt == directory or mnt.startswith(directory.rstrip("/") + "/"):
                    result.append(mnt)
    except OSError:
        pass
    return sorted(set(result), key=len, reverse=True)


def _interfaces_in(subnet: ipaddress.IPv4Network) -> set[str]:
    """Interfaces holding an IPv4 address inside subnet."""
    names: set[str] = set()
    try:
        out = subprocess.run(["ip", "-4", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
        for link in json.loads(out or "[]"):
            for addr in link.get("addr_info", []):
                try:
                    if ipaddress.IPv4Address(addr.get("local", "")) in subnet:
                        names.add(link["ifname"])
                except ValueError:
                    pass
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        pass
    return names


def _rule_mentions(words: list[str], bridges: set[str], subnet: ipaddress.IPv4Network | None) -> bool:
    for word in words:
        if word in bridges:
            return True
        if "/" in word and subnet is not None:
            try:
                net = ipaddress.IPv4Network(word, strict=False)
            except ValueError:
                continue
            if net.subnet_of(subnet):
                return True
    return False


def _teardown_network(bridges: set[str], subnet: ipaddress.IPv4Network | None) -> None:
    """Delete the iptables rules dockerd left for our bridges/subnet, then the bridges."""
    bridges = {b for b in bridges if b}
    if subnet is not None:
        bridges |= {name for name in _interfaces_in(subnet) if name.startswith(("cdk", "br-"))}
    if shutil.which("iptables"):
        for table in ("nat", "filter"):
            res = subprocess.run(["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True)
            if res.returncode != 0:
                continue
            for line in res.stdout.splitlines():
                if not line.startswith("-A "):
                    continue
                words = shlex.split(line)
                if _rule_mentions(words, bridges, subnet):
                    subprocess.run(["iptables", "-w", "-t", table, "-D", *words[1:]], capture_output=True)
    for name in sorted(bridges):
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def _owner_alive(info: dict) -> bool:
    """The test process that made an engine still runs (its dockerd may be stopped on purpose)."""
    owner = info.get("owner")
    if not isinstance(owner, int):
        return False
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user
    return True


def sweep_stale_engines(min_age: float = 60.0) -> list[str]:
    """Remove what earlier engines of this harness left when their process was killed.

    A directory /tmp/cdk*/engine.json counts as stale when it is older than
    min_age seconds, the test process that made it is gone, and no running
    process mentions the directory. Returns the directories removed.
    """
    removed = []
    live_cmdlines = [" ".join(_proc_cmdline(pid)) for pid in _all_pids()]
    for meta in Path("/tmp").glob("cdk*/engine.json"):
        directory = meta.parent
        try:
            if time.time() - meta.stat().st_mtime < min_age:
                continue
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        # Another pytest worker's engine whose dockerd a test stopped for a while is not stale.
        if _owner_alive(info) or any(str(directory) in cmd for cmd in live_cmdlines):
            continue
        for mnt in _mounts_under(str(directory)):
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        try:
            subnet = ipaddress.IPv4Network(info.get("subnet", ""))
        except ValueError:
            subnet = None
        _teardown_network({info.get("bridge", "")}, subnet)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(str(directory))
    return removed


class DockerEngine:
    """A private dockerd. Use as a context manager or call start()/stop().

    Attributes once started: ``dir``, ``host`` ("unix:///.../docker.sock"),
    ``socket_path``, ``log_path``, ``pid_file``, ``data_root``, ``exec_root``,
    ``bridge`` (interface name), ``subnet``, ``client`` (docker.DockerClient),
    ``process`` (the dockerd Popen), ``foreign`` (other engines seen at start),
    ``swept`` (directories of killed earlier engines cleaned up at start).
    """

    def __init__(self, dockerd: str = "dockerd", start_timeout: float = 60.0, extra_args: tuple[str, ...] = ()):
        self.dockerd = dockerd
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.dir: Path | None = None
        self.host = ""
        self.socket_path: Path | None = None
        self.log_path: Path | None = None
        self.pid_file: Path | None = None
        self.data_root: Path | None = None
        self.exec_root: Path | None = None
        self.bridge = ""
        self.subnet: ipaddress.IPv4Network | None = None
        self.client = None
        self.process: subprocess.Popen | None = None
        self.foreign: list[tuple[int, str]] = []
        self._built: dict[tuple[str, str], str] = {}
        self._bridge_created = False
        self._network_bridges: set[str] = set()
        self.swept: list[str] = []
        self._stopped = True

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "DockerEngine":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "DockerEngine":
        import docker  # imported here so that a missing SDK is reported as unavailability

        binary = shutil.which(self.dockerd)
        if not binary:
            raise EngineUnavailable(f"{self.dockerd} not found (apt-get install docker.io)")
        if os.geteuid() != 0:
            raise EngineUnavailable("dockerd needs root")
        if not shutil.which("ip"):
            raise EngineUnavailable("ip not found (apt-get install iproute2): the private bridge needs it")

        self.swept = sweep_stale_engines()
        self.foreign = foreign_engines()
        self.dir = Path(tempfile.mkdtemp(prefix="cdk", dir="/tmp"))
        self._stopped = False
        atexit.register(self.stop)
        self.socket_path = self.dir / "docker.sock"
        self.host = f"unix://{self.socket_path}"
        self.log_path = self.dir / "dockerd.log"
        self.pid_file = self.dir / "docker.pid"
        self.data_root = self.dir / "data"
        self.exec_root = self.dir / "exec"

        try:
            with _one_start_at_a_time():
                self._create_bridge()
                pool = ipaddress.IPv4Network((int(self.subnet.network_address) + 32768, 17))
                argv = [
                    binary,
                    "--host", self.host,
                    "--data-root", str(self.data_root),
                    "--exec-root", str(self.exec_root),
                    "--pidfile", str(self.pid_file),
                    "--bridge", self.bridge,
                    "--default-address-pool", f"base={pool},size=24",
                    *self.extra_args,
                ]
                self._argv = argv
                self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        """Run dockerd with the argv of start() and wait until it answers a ping."""
        import docker

        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self._argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while True:
            if self.process.poll() is not None:
                raise EngineUnavailable(self._failure(f"dockerd exited with code {self.process.returncode}"))
            if self.socket_path.exists():
                try:
                    client = docker.DockerClient(base_url=self.host, timeout=30)
                    client.ping()
                    self.client = client
                    break
                except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
                    last_error = exc
            if time.monotonic() > deadline:
                raise EngineUnavailable(self._failure(
                    f"dockerd did not answer within {self.start_timeout:.0f} s ({last_error})"))
            time.sleep(0.2)

    def stop_daemon(self, timeout: float = 60.0) -> None:
        """Stop dockerd as `systemctl stop docker` would (its containers stop with it), keeping
        its data, bridge and directory, so that start_daemon() brings the same engine back."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def start_daemon(self) -> None:
        """Start the engine stop_daemon() stopped; containers with a restart policy come back."""
        if self.process is not None and self.process.poll() is None:
            return
        with _one_start_at_a_time():
            self._launch()

    def _failure(self, what: str) -> str:
        msg = [what, f"dockerd log {self.log_path}:", _log_tail(self.log_path)]
        if self.foreign:
            msg.append("other engines running on this machine: "
                       + "; ".join(f"pid {pid}: {cmd}" for pid, cmd in self.foreign))
        return "\n".join(msg)

    def _create_bridge(self) -> None:
        self.subnet = _pick_subnet()
        self.bridge = "cdk" + secrets.token_hex(4)
        gateway = f"{self.subnet.network_address + 1}/24"
        # written first so that a later start can clean up after a killed session
        (self.dir / "engine.json").write_text(json.dumps(
            {"bridge": self.bridge, "subnet": str(self.subnet), "created": time.time(), "owner": os.getpid()}))
        for argv in (
            ["ip", "link", "add", "name", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", gateway, "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            res = subprocess.run(argv, capture_output=True, text=True)
            if res.returncode != 0:
                raise EngineUnavailable(f"{shlex.join(argv)} failed: {res.stderr.strip()}")
            self._bridge_created = True

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.client is not None:
            try:
                for net in self.client.networks.list():
                    opts = net.attrs.get("Options") or {}
                    name = opts.get("com.docker.network.bridge.name")
                    if net.attrs.get("Driver") == "bridge" and name != self.bridge:
                        self._network_bridges.add(name or "br-" + net.id[:12])
            except Exception:  # noqa: BLE001
                pass
            try:
                for container in self.client.containers.list(all=True):
                    try:
                        container.remove(force=True)
                    except Exception:  # noqa: BLE001
                        pass
            except Exception:  # noqa: BLE001
                pass
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
            self.client = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.dir is not None:
            # containerd and shims started by our dockerd carry our directory on
            # their command line; none should survive the daemon
            for _ in range(50):
                left = [pid for pid in _all_pids() if any(str(self.dir) in a for a in _proc_cmdline(pid))]
                if not left:
                    break
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.1)
            for mnt in _mounts_under(str(self.dir)):
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        if self._bridge_created:
            _teardown_network({self.bridge, *self._network_bridges}, self.subnet)
            self._bridge_created = False
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        try:
            atexit.unregister(self.stop)
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------ helpers
    def build_standin(self, cli_version: str | None = None, build: str = "official") -> str:
        """Build the stand-in image of one profile into this engine (once) and return its tag.

        ``build`` is "official" (cli_version 1.1.x .. 2.0.x, default 2.0.0) or "community"
        (the ssmirr build; cli_version is what its --version prints, default cc08a09).
        """
        key = (cli_version or "", build)
        if key in self._built:
            return self._built[key]
        if not self.host:
            raise StandinBuildError("engine not started")
        env = dict(os.environ, DOCKER_HOST=self.host)
        argv = [str(BUILD_SCRIPT), "--build", build]
        if cli_version:
            argv += ["--cli-version", cli_version]
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        lines = res.stdout.strip().splitlines()
        if res.returncode != 0 or not lines:
            raise StandinBuildError(
                f"{' '.join(argv)} failed with code {res.returncode}:\n"
                f"{res.stderr.strip()}\n{res.stdout.strip()}")
        tag = lines[-1].strip()
        self._built[key] = tag
        return tag
