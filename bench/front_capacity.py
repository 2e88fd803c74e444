#!/usr/bin/env python3
"""Concurrent sessions the nginx front holds, against the capacity its spec promises.

Renders the front from a spec (the tool's own main config and stream file, four stand-in
backends on loopback), starts that nginx, and holds N TCP connections (and some UDP sessions)
through it from several client processes (one process's open-file limit may be too small),
each from its own loopback source address (one address has one ephemeral port range per
destination). Prints asked / held / refused, nginx's error lines, the memory nginx used and
what the plan's capacity preflight says of this host. Bounded in time; stops by itself.

    python3 bench/front_capacity.py --connections 20000 [--capacity N] [--workers 2] [--udp 1000]
    python3 bench/front_capacity.py --connections 1000 --stock     # Debian's nginx.conf settings
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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

from conduit.drivers.nginx import read_limits  # noqa: E402
from conduit.facts.capacity import capacity_findings, front_sizing, system_findings  # noqa: E402
from conduit.render.nginx import render_main_conf, render_stream_conf  # noqa: E402
from conduit.spec.load import load_text  # noqa: E402
from conduit.spec.policy import HostPolicy, NginxPolicy  # noqa: E402
from conduit.spec.profiles import HostFacts  # noqa: E402

BACKENDS = 4
BANNER = b"standin backend\n"
PER_PROCESS = 15000  # connections one client process holds
CONNECT_AT_ONCE = 400
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


def client(index: int, port: int, udp_port: int | None, count: int, udp: int, hold: float, deadline: float, out) -> None:
    """Open `count` TCP connections (and `udp` UDP sessions) from 127.0.0.<index+2>, hold them, report."""
    raise_nofile()
    source = f"127.0.0.{index + 2}"

    async def one(gate) -> tuple | str:
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), timeout=10
                )
                data = await asyncio.wait_for(reader.readexactly(len(BANNER)), timeout=10)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                return type(exc).__name__
            return (reader, writer) if data == BANNER else "no banner"

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
            return sock if data == b"ping" else "udp no echo"

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


def spec_doc(tmp: Path, listen: int, udp_listen: int | None, base: int, capacity: int, workers: int):
    listeners = [{"name": "tcp", "port": listen, "protocol": "tcp", "backend_port": 8443, "host_port_base": base}]
    if udp_listen:
        listeners.append({"name": "udp", "port": udp_listen, "protocol": "udp", "backend_port": 8443, "host_port_base": base})
    data = {
        "apiVersion": "conduit.psiphon.ca/v1alpha1",
        "kind": "ConduitCluster",
        "metadata": {"name": "bench"},
        "spec": {
            "host": {"vcpus": workers, "memory": "8GiB", "nic_mbps": 1000},
            "containers": {"count": BACKENDS, "image": "ghcr.io/psiphon-inc/conduit/cli:2.0.0",
                           "resources": {"ulimit_nofile": 1 << 20}},
            "conduit": {"max_clients": 1000, "cli_version": "2.0", "build": "official"},
            "network": {"mode": "bridge", "backends": "published"},
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
    parser.add_argument("--hold", type=float, default=5, help="seconds the sessions are held before counting")
    parser.add_argument("--timeout", type=float, default=180, help="the whole run stops by then")
    parser.add_argument("--stock", action="store_true", help="Debian's nginx.conf settings instead of the own sizing")
    args = parser.parse_args()
    deadline = time.time() + args.timeout
    raise_nofile()

    with tempfile.TemporaryDirectory(prefix="front-bench-") as tmpdir:
        tmp = Path(tmpdir)
        # Below the ephemeral range: the clients' own ports (and their TIME-WAIT) never collide.
        base = _block(BACKENDS + 2)
        listen, udp_listen = base + BACKENDS, (base + BACKENDS + 1 if args.udp else None)
        capacity = args.capacity or max(args.connections, args.udp)
        doc = spec_doc(tmp, listen, udp_listen, base, capacity, args.workers)
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

        stop = mp.Event()
        servers = []
        for i in range(BACKENDS):
            ready = mp.Event()
            proc = mp.Process(target=backend, args=(base + i, ready, stop), daemon=True)
            proc.start()
            ready.wait(10)
            servers.append(proc)
        started = subprocess.run([NGINX, "-e", str(tmp / "error.log"), "-c", str(main_conf)], capture_output=True, text=True)
        if started.returncode != 0:
            raise SystemExit(f"nginx did not start: {started.stderr.strip()}")
        try:
            time.sleep(0.5)
            out: mp.Queue = mp.Queue()
            parts = max(1, math.ceil((args.connections + args.udp) / PER_PROCESS))
            clients = []
            for k in range(parts):
                share = args.connections // parts + (k < args.connections % parts)
                udp_share = args.udp // parts + (k < args.udp % parts)
                proc = mp.Process(target=client, args=(k, listen, udp_listen, share, udp_share, args.hold, deadline, out), daemon=True)
                proc.start()
                clients.append(proc)
            time.sleep(min(args.hold / 2 + 1, max(0, deadline - time.time())))
            results, peak = [], (0, 0)
            while len(results) < parts and time.time() < deadline:
                try:
                    peak = max(peak, nginx_memory(tmp / "nginx.pid"))
                    results.append(out.get(timeout=1))
                except Exception:  # noqa: BLE001 - queue.Empty: not done yet
                    continue
            errors = error_lines(tmp / "error.log")
        finally:
            master = int((tmp / "nginx.pid").read_text())
            os.kill(master, signal.SIGTERM)
            stop.set()
            for proc in [*servers, *(locals().get("clients") or [])]:
                proc.join(5)
                if proc.is_alive():
                    proc.kill()

    held = sum(r["held"] for r in results)
    refused = collections.Counter()
    for r in results:
        refused.update(r["refused"])
    mode = "Debian's stock nginx.conf (worker_connections 768)" if args.stock else (
        f"own nginx: {sizing.workers} workers x {sizing.worker_connections} connections, worker_rlimit_nofile {sizing.rlimit_nofile}")
    print(f"front capacity: spec promises {capacity} sessions per listener; {mode}")
    tcp_refused = sum(v for k, v in refused.items() if not k.startswith("udp "))
    print(f"  tcp  asked {args.connections:6d}  held {held:6d}  refused {tcp_refused:6d}"
          f"  ({len(results)}/{parts} client processes reported)")
    if args.udp:
        print(f"  udp  asked {args.udp:6d}  answered {sum(r['udp'] for r in results):6d}")
    if refused:
        print("  refusals: " + ", ".join(f"{k} x{v}" for k, v in refused.most_common()))
    print(f"  nginx memory at peak: {peak[0] / 1024:.1f} MiB resident in master + {peak[1]} workers")
    print("  nginx errors: " + ("none" if not errors else "; ".join(f"{k} (x{v})" for k, v in errors.most_common(4))))
    print("  plan's preflight on this host: " + ("fits" if not findings else ""))
    for line in findings:
        print(f"    {line}")


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
