#!/usr/bin/env python3
"""Concurrent sessions the nginx front holds, against the capacity its spec promises.

Renders the front from a spec (the tool's own main config and stream file), starts that nginx
in front of stand-in backends, and holds N TCP connections (and some UDP sessions) through it
from several client processes (one process's open-file limit may be too small), each from its
own loopback source address (one address has one ephemeral port range per destination). Prints
asked / held / refused, nginx's error lines, the memory nginx used and what the plan's capacity
preflight says of this host. Bounded in time; stops by itself.

The backends (--backends) are stand-in containers on a bridge network of a private dockerd
(--containers of them), reached as `network.backends` says: `network` (their addresses on the
bridge, the default) or `published` (127.0.0.1 ports, through Docker's userland proxy); or
`loopback`: four in-process servers on 127.0.0.1, no Docker at all. --runs repeats the
measurement against the same backends, a fresh nginx each time.

    python3 bench/front_capacity.py --connections 20000 --runs 10 [--backends network|published|loopback]
    python3 bench/front_capacity.py --connections 1000 --backends loopback --stock   # Debian's nginx.conf
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ipaddress
import math
import multiprocessing as mp
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conduit.drivers.nginx import read_limits  # noqa: E402
from conduit.facts.capacity import capacity_findings, front_sizing, system_findings  # noqa: E402
from conduit.render.nginx import render_main_conf, render_stream_conf  # noqa: E402
from conduit.spec.load import load_text  # noqa: E402
from conduit.spec.policy import HostPolicy, NginxPolicy  # noqa: E402
from conduit.spec.profiles import HostFacts  # noqa: E402

LOOPBACK_BACKENDS = 4
BACKEND_PORT = 8443
BANNER = b"standin backend\n"  # the stand-in container says "standin <hostname> <port>\n"
PER_PROCESS = 15000  # connections one client process holds
CONNECT_AT_ONCE = 400
# Seconds a client waits for the connect, then as long again for the banner. At 10 s, on 2 cores
# shared with other work (load 12-18), a starved client process woke to find its whole batch of
# in-flight connects (CONNECT_AT_ONCE) timed out together while the kernel had completed them (the
# host's ListenOverflows did not move, nginx logged nothing): 30 s, still short of the 127 s a
# Linux connect waits, measures the front rather than the client's share of the CPU.
CLIENT_WAIT = 30
NGINX = "/usr/sbin/nginx"
# Debian's stock nginx.conf, with the stream file included: what the front had before its own nginx.
STOCK = """worker_processes auto;
pid {pid};
error_log {log} warn;
load_module {module};
events {{
    worker_connections 768;
}}
include {stream};
"""


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ------------------------------------------------------------------ stand-in backends


def backend(port: int, ready, stop) -> None:
    """Accept and hold TCP connections (a banner on each); echo UDP datagrams."""
    raise_nofile()

    async def serve() -> None:
        held = []

        async def on_tcp(reader, writer) -> None:
            held.append(writer)
            writer.write(BANNER)
            try:
                await reader.read()  # until the client or nginx closes
            finally:
                writer.close()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport) -> None:
                self.transport = transport

            def datagram_received(self, data, addr) -> None:
                self.transport.sendto(data, addr)

        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(on_tcp, "127.0.0.1", port, backlog=4096)
        await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        os._exit(0)  # the held connections go with the process

    asyncio.run(serve())


# ------------------------------------------------------------------ clients


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # linux/in.h


async def connect(source: str, port: int):
    """A TCP connection to 127.0.0.1:port from `source`, its port chosen at connect time, as for any
    destination: a port bind() takes is the host's alone, and 20,000 of them (with the last run's in
    TIME_WAIT) left nginx no port to reach a backend. The front's real clients are elsewhere."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


def client(index: int, port: int, udp_port: int | None, count: int, udp: int, hold: float, deadline: float, out) -> None:
    """Open `count` TCP connections (and `udp` UDP sessions) from 127.0.0.<index+2>, hold them, report."""
    raise_nofile()
    source = f"127.0.0.{index + 2}"

    async def one(gate) -> tuple | str:
        async with gate:
            phase = "connect"
            try:
                reader, writer = await asyncio.wait_for(connect(source, port), timeout=CLIENT_WAIT)
                phase = "banner"
                data = await asyncio.wait_for(reader.readline(), timeout=CLIENT_WAIT)
            except (OSError, asyncio.TimeoutError) as exc:
                return f"{phase} {type(exc).__name__}"
            if not data.endswith(b"\n"):
                writer.close()
                return "closed before the banner"
            return (reader, writer) if data.startswith(b"standin ") else "no banner"

    async def session(gate) -> socket.socket | str:
        async with gate:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.bind((source, 0))
                sock.connect(("127.0.0.1", udp_port))
                loop = asyncio.get_running_loop()
                await loop.sock_sendall(sock, b"ping")
                data = await asyncio.wait_for(loop.sock_recv(sock, 64), timeout=5)
            except (OSError, asyncio.TimeoutError) as exc:
                sock.close()
                return "udp " + type(exc).__name__
            return sock if data.endswith(b"ping") else "udp no echo"

    async def run() -> dict:
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)
        results = await asyncio.gather(*(one(gate) for _ in range(count)), *(session(gate) for _ in range(udp)))
        tcp, dgram = results[:count], results[count:]
        streams = [r for r in tcp if not isinstance(r, str)]
        socks = [r for r in dgram if not isinstance(r, str)]
        await asyncio.sleep(max(0.0, min(hold, deadline - time.time())))
        # still held: neither nginx nor the backend closed it meanwhile
        alive = sum(1 for reader, writer in streams if not reader.at_eof() and not writer.is_closing())
        reasons = collections.Counter(r for r in results if isinstance(r, str))
        for _reader, writer in streams:
            writer.close()
        for sock in socks:
            sock.close()
        return {"held": alive, "connected": len(streams), "udp": len(socks), "refused": dict(reasons)}

    out.put(asyncio.run(run()))


# ------------------------------------------------------------------ the front


class Backends:
    """Where the front's backends are: the spec's network section and listeners say how nginx reaches them."""

    def __init__(self, mode: str, count: int, base: int, subnet: str | None = None):
        self.mode, self.count, self.base, self.subnet = mode, count, base, subnet

    def network(self) -> dict:
        if self.mode == "network":
            return {"mode": "bridge", "backends": "network", "subnet": self.subnet}
        return {"mode": "bridge", "backends": "published"}

    def listener(self, name: str, port: int, protocol: str) -> dict:
        listener = {"name": name, "port": port, "protocol": protocol, "backend_port": BACKEND_PORT}
        return listener if self.mode == "network" else {**listener, "host_port_base": self.base}


def spec_doc(tmp: Path, backends: Backends, listen: int, udp_listen: int | None, capacity: int, workers: int):
    listeners = [backends.listener("tcp", listen, "tcp")]
    if udp_listen:
        listeners.append(backends.listener("udp", udp_listen, "udp"))
    data = {
        "apiVersion": "conduit.psiphon.ca/v1alpha1",
        "kind": "ConduitCluster",
        "metadata": {"name": "bench"},
        "spec": {
            "host": {"vcpus": workers, "memory": "8GiB", "nic_mbps": 1000},
            "containers": {"count": backends.count, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0",
                           "resources": {"ulimit_nofile": 1 << 20}},
            "conduit": {"max_clients": 1000, "cli_version": "2.0", "build": "official"},
            "network": backends.network(),
            "loadbalancer": {
                "enabled": True, "listeners": listeners, "capacity": capacity, "worker_processes": workers,
                "access_log": None, "proxy_timeout_seconds": 600,
                "nginx": {"binary": NGINX, "include_file": f"{tmp}/stream.conf", "instance_config": f"{tmp}/nginx.conf",
                          "instance_pid_file": f"{tmp}/nginx.pid", "error_log": f"{tmp}/error.log"},
            },
            "sysctl": {"enabled": False},
            "tracker": {"enabled": False},
        },
    }  # fmt: skip
    nginx = NginxPolicy(binaries=[NGINX], config_dirs=[str(tmp), "/etc/nginx"], pid_dirs=[str(tmp), "/run"], log_dirs=[str(tmp), "/var/log/nginx"])
    facts = HostFacts(vcpus=float(workers), memory=8 << 30, nic_mbps=1000, nofile_limit=1 << 20)
    return load_text(yaml.safe_dump(data), "bench.yaml", facts, (HostPolicy(nginx=nginx), "the bench's policy"))


@contextlib.contextmanager
def loopback_backends(stop):
    """Four in-process servers on 127.0.0.1 ports base .. base + 3."""
    base = _block(LOOPBACK_BACKENDS)
    servers = []
    try:
        for i in range(LOOPBACK_BACKENDS):
            ready = mp.Event()
            proc = mp.Process(target=backend, args=(base + i, ready, stop), daemon=True)
            proc.start()
            ready.wait(10)
            servers.append(proc)
        yield Backends("published", LOOPBACK_BACKENDS, base)
    finally:
        stop.set()
        _reap(servers)


@contextlib.contextmanager
def container_backends(mode: str, count: int, udp: bool):
    """`count` stand-in containers on a bridge network of a private dockerd: container i has the
    subnet's address i + 1 and, with published backends, 127.0.0.1:(base + i - 1) through
    Docker's userland proxy, as conduit lays them out."""
    from docker.types import Ulimit
    from harness import DockerEngine

    with DockerEngine() as engine:
        image = engine.build_standin("2.0.0")
        api = engine.client.api
        # A /24 of the engine's own /16 that neither its bridge (the first) nor its pool (the upper half) uses.
        subnet = ipaddress.IPv4Network((int(engine.subnet.network_address) + 10 * 256, 24))
        ipam = {"Driver": "default", "Config": [{"Subnet": str(subnet), "Gateway": str(subnet.network_address + 1)}]}
        api.create_network("front-bench", driver="bridge", ipam=ipam)
        base = _block(count) if mode == "published" else 0
        listen = f"tcp:{BACKEND_PORT}" + (f",udp:{BACKEND_PORT}" if udp else "")
        for i in range(1, count + 1):
            ports = {f"{BACKEND_PORT}/tcp": ("127.0.0.1", base + i - 1)}
            if udp:
                ports[f"{BACKEND_PORT}/udp"] = ("127.0.0.1", base + i - 1)
            host = api.create_host_config(network_mode="front-bench", ulimits=[Ulimit(name="nofile", soft=16384, hard=16384)],
                                          port_bindings=ports if mode == "published" else {})
            endpoint = api.create_networking_config({"front-bench": api.create_endpoint_config(ipv4_address=str(subnet.network_address + i + 1))})
            made = api.create_container(image, name=f"front-bench-{i}", environment={"STANDIN_LISTEN": listen}, host_config=host,
                                        networking_config=endpoint, ports=[(BACKEND_PORT, "tcp"), (BACKEND_PORT, "udp")])
            api.start(made["Id"])
        yield Backends(mode, count, base, str(subnet))


def _reap(procs) -> None:
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


def nginx_memory(pid_file: Path) -> tuple[int, int]:
    """(master + workers resident KiB, worker count)."""
    master = int(pid_file.read_text())
    pids = [master] + [int(p.name) for p in Path("/proc").glob("[0-9]*") if _ppid(p) == master]
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total, len(pids) - 1


def proxy_load() -> tuple[int, int, int]:
    """(docker-proxy processes, their open files, their resident KiB): what the userland proxy costs."""
    procs = files = rss = 0
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if (p / "comm").read_text().strip() != "docker-proxy":
                continue
            files += len(os.listdir(p / "fd"))
            rss += next(int(line.split()[1]) for line in (p / "status").read_text().splitlines() if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
        procs += 1
    return procs, files, rss


def _ppid(p: Path) -> int | None:
    try:
        stat = (p / "stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def error_lines(log: Path) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        if "[error]" in line or "[alert]" in line or "[crit]" in line or "[emerg]" in line:
            message = re.sub(r"^\d+#\d+: (\*\d+ )?", "", line.split("] ", 1)[-1])
            counts[message.split(", client:")[0].split(" while ")[0][:120]] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=20000, help="TCP connections asked")
    parser.add_argument("--udp", type=int, default=1000, help="UDP sessions asked (0: no UDP listener)")
    parser.add_argument("--capacity", type=int, default=None, help="capacity the spec promises (default: --connections)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", choices=("network", "published", "loopback"), default="network",
                        help="stand-in containers reached by bridge address or published port, or loopback servers")
    parser.add_argument("--containers", type=int, default=20, help="stand-in containers (not with loopback)")
    parser.add_argument("--runs", type=int, default=1, help="measurements against the same backends")
    parser.add_argument("--hold", type=float, default=5, help="seconds the sessions are held before counting")
    parser.add_argument("--timeout", type=float, default=180, help="each run stops by then")
    parser.add_argument("--stock", action="store_true", help="Debian's nginx.conf settings instead of the own sizing")
    args = parser.parse_args()
    raise_nofile()
    stop = mp.Event()
    if args.backends == "loopback":
        where = loopback_backends(stop)
    else:
        where = container_backends(args.backends, args.containers, args.udp > 0)
    held = []
    with where as backends:
        for run in range(1, args.runs + 1):
            if args.runs > 1:
                print(f"run {run} of {args.runs}")
            if run > 1:
                settle_conntrack(4 * args.connections)
            held.append(measure(args, backends))
    if args.runs > 1:
        print(f"held {' '.join(str(h) for h in held)} of {args.connections} ({sum(h == args.connections for h in held)} of {args.runs} runs held all)")


CONNTRACK = Path("/proc/sys/net/netfilter")


def settle_conntrack(room: int, timeout: float = 240) -> None:
    """Wait until the kernel's connection tracking has `room` entries free for the next run. Each run's
    closed connections (two per session) stay in it for a while (nf_conntrack_tcp_timeout_time_wait,
    120 s), and runs back to back filled the table ("nf_conntrack: table full, dropping packet": SYNs
    dropped, clients and nginx timed out). A front's clients do not all leave and come back every minute."""
    try:
        most = int((CONNTRACK / "nf_conntrack_max").read_text())
    except (OSError, ValueError):
        return  # no connection tracking on this host
    start, count = time.monotonic(), 0
    while time.monotonic() - start < timeout:
        try:
            count = int((CONNTRACK / "nf_conntrack_count").read_text())
        except (OSError, ValueError):
            return
        if count + room <= most:
            break
        time.sleep(2)
    if time.monotonic() - start >= 2:
        print(f"  (waited {time.monotonic() - start:.0f} s for connection tracking to let go of the last run: {count} of {most} entries)")


def measure(args, backends: Backends) -> int:
    """One run: a fresh nginx in front of the backends, the clients, the report; the TCP sessions held."""
    deadline = time.time() + args.timeout
    with tempfile.TemporaryDirectory(prefix="front-bench-") as tmpdir:
        tmp = Path(tmpdir)
        # Below the ephemeral range: the clients' own ports (and their TIME-WAIT) never collide.
        listen = _block(2)
        udp_listen = listen + 1 if args.udp else None
        capacity = args.capacity or max(args.connections, args.udp)
        doc = spec_doc(tmp, backends, listen, udp_listen, capacity, args.workers)
        sizing = front_sizing(doc)
        (tmp / "stream.conf").write_text(render_stream_conf(doc))
        main_conf = tmp / "nginx.conf"
        if args.stock:
            main_conf.write_text(STOCK.format(pid=tmp / "nginx.pid", log=tmp / "error.log", stream=tmp / "stream.conf",
                                              module=doc.spec.loadbalancer.nginx.stream_module))
        else:
            main_conf.write_text(render_main_conf(doc))
        findings = capacity_findings(doc, sizing, read_limits(Path("/")))
        if args.stock:  # what plan says of the system nginx under loadbalancer.instance: system
            findings = system_findings(sizing, 768, len(os.sched_getaffinity(0)), "Debian's nginx.conf")
        started = subprocess.run([NGINX, "-e", str(tmp / "error.log"), "-c", str(main_conf)], capture_output=True, text=True)
        if started.returncode != 0:
            raise SystemExit(f"nginx did not start: {started.stderr.strip()}")
        clients = []
        try:
            time.sleep(0.5)
            out: mp.Queue = mp.Queue()
            parts = max(1, math.ceil((args.connections + args.udp) / PER_PROCESS))
            for k in range(parts):
                share = args.connections // parts + (k < args.connections % parts)
                udp_share = args.udp // parts + (k < args.udp % parts)
                proc = mp.Process(target=client, args=(k, listen, udp_listen, share, udp_share, args.hold, deadline, out), daemon=True)
                proc.start()
                clients.append(proc)
            time.sleep(min(args.hold / 2 + 1, max(0, deadline - time.time())))
            results, peak, proxies = [], (0, 0), (0, 0, 0)
            while len(results) < parts and time.time() < deadline:
                try:
                    peak = max(peak, nginx_memory(tmp / "nginx.pid"))
                    if args.backends == "published":
                        proxies = max(proxies, proxy_load(), key=lambda load: load[1])
                    results.append(out.get(timeout=1))
                except Exception:  # noqa: BLE001 - queue.Empty: not done yet
                    continue
            errors = error_lines(tmp / "error.log")
        finally:
            master = int((tmp / "nginx.pid").read_text())
            os.kill(master, signal.SIGTERM)
            _reap(clients)
            _wait_gone(master)

    held = sum(r["held"] for r in results)
    refused = collections.Counter()
    for r in results:
        refused.update(r["refused"])
    mode = "Debian's stock nginx.conf (worker_connections 768)" if args.stock else (
        f"own nginx: {sizing.workers} workers x {sizing.worker_connections} connections, worker_rlimit_nofile {sizing.rlimit_nofile}")
    reach = {"network": "by bridge address", "published": "by published port (userland proxy)"}.get(backends.mode)
    where = f"{backends.count} stand-in containers {reach}" if args.backends != "loopback" else f"{backends.count} loopback servers"
    print(f"front capacity: spec promises {capacity} sessions per listener; {mode}; {where}")
    tcp_refused = sum(v for k, v in refused.items() if not k.startswith("udp "))
    print(f"  tcp  asked {args.connections:6d}  held {held:6d}  refused {tcp_refused:6d}"
          f"  ({len(results)}/{parts} client processes reported)")
    if args.udp:
        print(f"  udp  asked {args.udp:6d}  answered {sum(r['udp'] for r in results):6d}")
    if refused:
        print("  refusals: " + ", ".join(f"{k} x{v}" for k, v in refused.most_common()))
    print(f"  nginx memory at peak: {peak[0] / 1024:.1f} MiB resident in master + {peak[1]} workers")
    if proxies[0]:
        print(f"  docker-proxy at peak: {proxies[0]} processes, {proxies[1]} open files, {proxies[2] / 1024:.1f} MiB resident")
    print("  nginx errors: " + ("none" if not errors else "; ".join(f"{k} (x{v})" for k, v in errors.most_common(4))))
    print("  plan's preflight on this host: " + ("fits" if not findings else ""))
    for line in findings:
        print(f"    {line}")
    sys.stdout.flush()
    return held


def _wait_gone(pid: int, seconds: float = 15) -> None:
    """Until nginx's master has exited (its listening ports are free for the next run)."""
    end = time.time() + seconds
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _block(count: int, low: int = 20000, high: int = 32000) -> int:
    """The first of `count` consecutive ports free for TCP and UDP on every address."""
    rng = random.Random()
    for _ in range(200):
        first = rng.randrange(low, high - count)
        if all(_free(first + i, kind) for i in range(count) for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)):
            return first
    raise SystemExit("no free block of ports below the ephemeral range")


def _free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


if __name__ == "__main__":
    main()
