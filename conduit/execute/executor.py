"""Carry out plan steps on the host: one handler per step kind (HANDLERS), each doing what its
step says, raising StepFailed when the host refuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


from conduit.errors import CompartmentProblem, DockerError, HostileEntry, KeyProblem
from conduit.drivers.docker import (
    CountingClient,
    answers,
    call,
    create_container,
    create_network,
    create_volume,
    image_tag,
    inspect_image,
    remove_volume,
    repository,
    start_container,
)
from conduit.drivers.dockerapi import not_found, refusals
from conduit.execute import canary, image_probe, nodehealth
from conduit.execute.compartment import ensure_compartment
from conduit.drivers.polling import retries
from conduit.facts.nginx_include import insert_include, remove_include
from conduit.drivers.nginx import INSTALL_HINT, children, master_pid
from conduit.drivers.tracker import legacy_pidfile, tracker_log, tracker_pidfile
from conduit.drivers.files import HOST_CONFIG, atomic_write, open_private, private_tree, remove
from conduit.drivers.keys import backup, volume_dir
from conduit.plan.kinds import Action, Kind
from conduit.plan.planner import Step
from conduit.drivers.programs import not_installed
from conduit.plan.target import CANDIDATE, FrontTarget, NodeTarget, Target
from conduit.state.images import Images

STOP_TIMEOUT = 10  # seconds a node gets to say "Stopped." before it is killed
RELOAD_SECONDS = 10  # the most the system nginx gets to let go of the front's ports before the tool goes on


def host_path(root: Path, path: str) -> Path:
    """A host path under the tool's root (--root); as conduit.spec.resources says it, which the executor does not import."""
    return root / path.lstrip("/")


class StepFailed(Exception):
    """The host refused a step; the message is one line for the operator."""


@dataclass
class Executor:
    """Runs steps against the host, given the plan's target (conduit.plan.target), never the spec."""

    target: Target
    root: Path
    state_dir: Path
    client: CountingClient | None
    warnings: list[str] = field(default_factory=list)
    nginx_changed: bool = False
    # sysctl writes of this run: {key: (value, the kernel's answer, or None when it took it)}
    sysctl_answers: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    baselines: dict[str, int] = field(default_factory=dict)  # canaries' clients before their new image
    compromised: list[str] = field(default_factory=list)  # alerts: nodes that planted links or special files in their volumes
    key_backups: Path | None = None  # where this run's key backup steps copy the keys (one folder per generation)
    images: Images | None = None  # the apply's image store: what a probe step learns is recorded there
    pulled: dict[str, dict] = field(default_factory=dict)  # repository@digest: Docker's answer for it, from its pull (or one inspect)
    _asking: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    # ------------------------------------------------------------ helpers

    def node(self, name: str) -> NodeTarget | None:
        return self.target.nodes.get(name)

    def docker(self) -> CountingClient:
        if self.client is None:
            raise StepFailed(f"no Docker daemon on this machine: {not_installed('dockerd')}")
        return self.client

    def run(self, step: Step) -> None:
        handler = HANDLERS[step.kind]
        try:
            handler(self, step)
        except DockerError as exc:
            raise StepFailed(str(exc)) from None
        except OSError as exc:
            raise StepFailed(f"{step.kind} {step.id}: {exc.strerror or exc}") from None

    # ------------------------------------------------------------ sysctl

    def _sysctl(self, step: Step) -> None:
        path = host_path(self.root, "/proc/sys/" + step.id.replace(".", "/"))
        value = step.desired["value"]
        try:
            path.write_text(value + "\n")
        except OSError as exc:
            message = f"the kernel refused sysctl {step.id} = {value}: {exc.strerror}"
            if step.on_error == "warn":
                self.warnings.append(message)
                self.sysctl_answers[step.id] = (value, exc.strerror or str(exc))
                return
            raise StepFailed(message) from None
        self.sysctl_answers[step.id] = (value, None)

    def _sysctl_file(self, step: Step) -> None:
        path = host_path(self.root, step.id)
        if step.action == "delete":
            remove(path)
        else:
            atomic_write(path, step.desired["content"], HOST_CONFIG)

    # ------------------------------------------------------------ nginx

    def _nginx_paths(self) -> FrontTarget:
        return self.target.front

    def _own(self) -> bool:
        return self.target.front.own

    def _nginx_conf(self, step: Step) -> None:
        self._tested_write(step, self.test_nginx)

    def _nginx_main(self, step: Step) -> None:
        """The own nginx's main config, written whole."""
        self._tested_write(step, self.nginx_t)

    def _tested_write(self, step: Step, test) -> None:
        """An nginx file written as a candidate, tested by `test(candidate)`, then swapped in."""
        path = host_path(self.root, step.id)
        self.nginx_changed = True
        if step.action == "delete":
            remove(path)
            return
        candidate = path.with_name(f".{path.name}.candidate")
        atomic_write(candidate, step.desired["content"], HOST_CONFIG)
        try:
            test(candidate)
        except StepFailed:
            remove(candidate)
            raise
        os.replace(candidate, path)

    def test_nginx(self, include: Path | None = None) -> None:
        """nginx -t of the front's main config, including `include` in place of the stream file."""
        paths = self._nginx_paths()
        main = host_path(self.root, paths.config)
        if include is None:
            self.nginx_t(main)
            return
        conf = main.with_name(f".{main.name}.conduit-test")
        if self._own():
            text = (paths.test_main or "").replace(CANDIDATE, str(include))
        else:
            text = insert_include(main.read_text(), self.target.front.test_include.replace(CANDIDATE, str(include)))
        atomic_write(conf, text, HOST_CONFIG)
        try:
            self.nginx_t(conf)
        finally:
            remove(conf)

    def nginx_t(self, conf: Path) -> None:
        paths = self._nginx_paths()
        argv = [paths.binary, "-t", "-q", "-e", self._error_log(), "-c", str(conf)]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise StepFailed(f"nginx not found at {paths.binary} ({INSTALL_HINT})") from None
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if "emerg" in line or "error" in line] or result.stderr.splitlines()
            raise StepFailed(f"nginx rejected the configuration: {(lines or ['nginx -t failed'])[-1].strip()}")

    def _error_log(self) -> str:
        """Where nginx logs before it has read its config: the own instance's log, or stderr."""
        return str(host_path(self.root, self._nginx_paths().error_log)) if self._own() else "stderr"

    def _nginx_include(self, step: Step) -> None:
        main = host_path(self.root, step.id)
        self.nginx_changed = True
        text = main.read_text()
        new = remove_include(text) if step.action == "delete" else insert_include(text, step.desired["line"])
        if new != text:
            atomic_write(main, new, mode=main.stat().st_mode & 0o777)
        if self._own() and step.action == "delete":
            # Moving to the own nginx: the system nginx lets go of the front's ports, which its
            # master has done once it runs workers of the new configuration.
            system = master_pid(self.root, self._nginx_paths().system_pid_file)
            if system is not None:
                before = self.hangup(system)
                # If it never does, the own nginx's start says what holds the ports.
                if self.reload_pending(system, before) is not None:
                    for _ in retries(RELOAD_SECONDS):
                        if self.reload_pending(system, before) is None:
                            break

    def _nginx(self, step: Step) -> None:
        if step.action == "delete":
            if self._own():
                self.stop_nginx()
            return  # the system nginx may serve other sites: the tool never stops it
        # Asked now, not planned: the master may have died or been started since the plan was made,
        # and a start next to a live master fails on its ports (the phase reloads a live one).
        if self.nginx_pid() is None:
            self.start_nginx()
            self.nginx_changed = False

    def nginx_pid(self) -> int | None:
        """The live nginx master of the front; a stale pid file naming another process is not nginx,
        and with instance: own only a master started with the tool's own main config counts."""
        front = self.target.front
        return master_pid(self.root, front.pid_file, front.config if front.own else None)

    def start_nginx(self) -> None:
        paths = self._nginx_paths()
        if self._own() and self.target.systemd:
            self._nginx_unit()
            return
        argv = [paths.binary, "-c", str(host_path(self.root, paths.config))]
        if self._own():
            argv[1:1] = ["-e", self._error_log()]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise StepFailed(f"nginx not found at {paths.binary} ({INSTALL_HINT})") from None
        if result.returncode != 0:
            raise StepFailed(f"nginx did not start: {(result.stderr.strip().splitlines() or ['failed'])[-1]}")

    def _nginx_unit(self) -> None:
        """Where systemd is PID 1, the own nginx is a unit the tool owns."""
        unit = self.target.front.unit_name
        atomic_write(host_path(self.root, f"/etc/systemd/system/{unit}.service"), self.target.front.unit or "", HOST_CONFIG)
        systemctl("daemon-reload")
        systemctl("enable", unit)
        systemctl("restart", unit)

    def stop_nginx(self, timeout: float = 10) -> None:
        """Stop the tool's own nginx (never another): its unit, or its master and workers."""
        if self.target.systemd:
            unit = self.target.front.unit_name
            path = host_path(self.root, f"/etc/systemd/system/{unit}.service")
            if path.exists():
                systemctl("disable", "--now", unit, check=False)
                remove(path)
                systemctl("daemon-reload")
        pid = self.nginx_pid()
        if pid is None:
            return
        workers = children(host_path(self.root, "/proc"), pid)
        stop_process(pid, timeout)  # fast shutdown: the front's sessions end with it
        for worker in workers:
            stop_process(worker, 1)
        remove(host_path(self.root, self._nginx_paths().instance_pid_file))

    def reload_nginx(self) -> tuple[int, set[int]] | None:
        """Reload a running nginx (SIGHUP to the master), or start it. Whether one runs is asked
        now: a reload is also what a rollback and a failed batch's restore do, whatever the plan saw.
        Returns the master and its workers before the reload (None when it was started): the reload
        is taken once it runs a worker that is not one of them (reload_pending)."""
        pid = self.nginx_pid()
        self.nginx_changed = False
        if pid is None:
            self.start_nginx()
            return None
        return pid, self.hangup(pid)

    def hangup(self, master: int) -> set[int]:
        """SIGHUP to an nginx master; returns its workers from before."""
        workers = children(host_path(self.root, "/proc"), master)
        os.kill(master, signal.SIGHUP)
        return workers

    def reload_pending(self, master: int, before: set[int]) -> str | None:
        """None once `master` runs a worker it did not run before its reload, else why not."""
        if children(host_path(self.root, "/proc"), master) - before:
            return None
        return f"nginx (master pid {master}) started no workers with the new configuration after its reload; its error log says why"

    def _backends(self, step: Step) -> None:
        """Drain: the stream file the step carries (these nodes out of the front), for the seconds
        their sessions get to go. Restore: every node back in."""
        content = step.desired.get("content") if step.action == "drain" else None
        if self.drain_backends(content if content is not None else self.target.front.stream):
            time.sleep(step.desired.get("seconds") or 0)

    def drain_backends(self, content: str) -> bool:
        """Write the stream file `content` and reload. False when no front runs yet to drain from:
        a rollback runs the containers phase before the nginx phase that starts it."""
        path = host_path(self.root, self.target.front.include_file)
        if not path.exists() or self.nginx_pid() is None:
            return False
        atomic_write(path, content, HOST_CONFIG)
        self.reload_nginx()
        return True

    # ------------------------------------------------------------ docker objects

    def _network(self, step: Step) -> None:
        client = self.docker()
        if step.action in ("delete", "replace"):
            call(client, client.api.remove_network, step.id)
        if step.action != "delete":
            create_network(client, step.id, step.desired.get("subnet"), self.target.cluster)

    def _volume(self, step: Step) -> None:
        """Volumes are made, and removed only by `destroy --purge-data`'s plan (with their keys)."""
        if step.action == "create":
            create_volume(self.docker(), step.id, self.target.cluster)
        elif step.action == "delete":
            remove_volume(self.docker(), step.id)

    def _container(self, step: Step) -> None:
        client = self.docker()
        if step.action == "delete":
            self.remove_container(step.id)
        elif step.action == "create":
            self.start_new(step)
        elif step.action == "update":
            self.update_container(step)
        elif step.action in ("replace", "adopt"):
            # Never two processes on one key: the old one stops before the new one starts.
            # It is kept, renamed, until the new one passes its gate (see keep/restore below).
            # One step, not four: the journal and restore_previous know a replace as a whole
            # (the old node held as .previous, or back under its name), whichever call failed.
            held = previous_name(step.id)
            self.remove_container(held)
            call(client, client.api.stop, step.id, timeout=STOP_TIMEOUT)
            call(client, client.api.rename, step.id, held)
            self.start_new(step)

    def _canary(self, step: Step) -> None:
        """measure: the canaries' clients before the new image; judge: they win them back (conduit.execute.canary)."""
        ports = {name: n.metrics_port for name, n in self.target.nodes.items() if name in step.desired["nodes"]}
        if step.action == "measure":
            self.baselines.update(canary.baselines(ports))
            return
        try:
            canary.analyse(ports, self.baselines, step.desired["seconds"], step.desired["ratio"])
        except canary.AnalysisFailed as exc:
            raise StepFailed(str(exc)) from None

    def _image(self, step: Step) -> None:
        """Pull the image the plan found missing on Docker."""
        client = self.docker()
        image = step.id
        try:
            with answers(client):
                client.api.pull(repository(image), tag=image_tag(image) or "latest")
        except refusals() as exc:
            reason = " ".join(str(exc.explanation or exc).split())
            raise StepFailed(f"image {image} is not on this host and could not be pulled: {reason}; "
                             "docker pull it or fix spec.containers.image") from None

    def _image_step(self, step: Step) -> None:
        """pull: the spec's image, or a new digest behind its tag (repository@sha256:…); probe: ask
        that digest what it speaks, before any node is touched (conduit.execute.image_probe)."""
        if step.action == Action.PROBE:
            contradiction = image_probe.probe_pulled(self.docker(), step.desired, self.images, self.warnings.append, self.pulled_image(step.id))
            if contradiction is not None:
                raise StepFailed(contradiction)
        elif "@" in step.id:
            self.pulled[step.id] = image_probe.pull_by_digest(self.docker(), step.id)
        else:
            self._image(step)

    def _keys(self, step: Step) -> None:
        """Copy the keys (and personal compartments) of the step's volumes out, before a replace or a
        purge touches them; into this generation's folder, which `keys restore` reads."""
        if self.key_backups is None:
            raise StepFailed("key backup failed: this run has no folder for key backups; nothing was touched")
        try:
            backup(self.docker(), list(step.desired["volumes"]), self.key_backups, step.desired["nodes"])
        except HostileEntry as exc:  # its key stays out of the backup, and no container is touched
            self.compromised.append(nodehealth.planted(exc).alert)
            raise StepFailed(f"key backup failed, no node was touched: {exc}") from None
        except KeyProblem as exc:
            raise StepFailed(f"key backup failed: {exc}") from None
        except OSError as exc:  # a full disk or a refused write in the state directory
            raise StepFailed(f"key backup failed, no node was touched: {exc.strerror or exc}") from None

    def _compartment(self, step: Step) -> None:
        """A node that asks for personal clients gets its compartment, made by its own image on its volume."""
        client = self.docker()
        volume, data_dir, node = step.desired["volume"], step.desired["data_dir"], step.desired["node"]
        try:
            folder = volume_dir(client, volume)
            if folder is None:
                raise StepFailed(f"volume {volume} is missing")
            # The volume is read now, not at planning: a second compartment would unpair the
            # people paired with the first, and one may have been restored since the plan was made.
            ensure_compartment(client, folder, step.desired["image"], volume, data_dir, node)
        except HostileEntry as exc:
            self.compromised.append(nodehealth.planted(exc).alert)
            raise StepFailed(str(exc)) from None
        except (KeyProblem, CompartmentProblem) as exc:
            raise StepFailed(f"container {node}: personal clients need a compartment: {exc}") from None
        except refusals() as exc:
            raise StepFailed(f"container {node}: conduit new-compartment-id failed: {exc.explanation or exc}") from None

    def start_new(self, step: Step) -> None:
        client = self.docker()
        node = self.node(step.id)
        if node is None:
            raise StepFailed(f"container {step.id} is not in the plan's target")
        container_id = create_container(client, step.id, step.desired, node.labels, (self.pulled_image(step.desired.get("image_id")) or {}).get("Id"))
        try:
            start_container(client, container_id)
        except refusals() as exc:
            raise StepFailed(f"container {step.id} did not start: {exc.explanation or exc}") from None

    def pulled_image(self, ref: str | None) -> dict | None:
        """Docker's answer for a repository@digest the nodes move to: from its pull in this run, else
        asked once (an apply resumed after the pull); None for any other reference."""
        if not ref or "@" not in ref:
            return None
        with self._asking:  # the nodes are created side by side: one of them asks, the others wait for its answer
            if ref not in self.pulled:
                attrs = inspect_image(self.docker(), ref)
                if attrs is None:
                    return None
                self.pulled[ref] = attrs
        return self.pulled[ref]

    def update_container(self, step: Step) -> None:
        client = self.docker()
        fields = {c.field for c in step.changes}
        body = {}
        if "cpus" in fields:
            body["NanoCpus"] = int(round(step.desired["cpus"] * 1e9))
        if "memory" in fields:
            body["Memory"] = body["MemorySwap"] = step.desired["memory"]
        if body:
            # The SDK's update_container has no NanoCpus, and CPU period/quota cannot be
            # mixed with the NanoCpus the container was created with: post the update as is.
            api = client.api
            call(client, lambda: api._result(api._post_json(api._url("/containers/{0}/update", step.id), data=body), True))
        if "state" in fields and step.desired["state"] == "stopped":  # held stopped (conduit.state.holds)
            call(client, client.api.stop, step.id, timeout=STOP_TIMEOUT)
        elif "state" in fields:
            call(client, start_container, client, step.id)

    def remove_container(self, name: str) -> None:
        """Stop and remove a container; its data volume stays."""
        client = self.docker()
        try:
            with answers(client):
                client.api.stop(name, timeout=STOP_TIMEOUT)
                client.api.remove_container(name, v=False)
        except not_found():
            pass
        except refusals() as exc:
            raise StepFailed(f"could not remove container {name}: {exc.explanation or exc}") from None

    def drop_previous(self, name: str) -> None:
        """The new container passed its gate: the old one is not needed any more."""
        self.remove_container(previous_name(name))

    def restore_previous(self, name: str) -> bool:
        """The new container failed: put the old one back, on the same volume, under its name.

        Raises DockerError when Docker does not answer, StepFailed when it refuses. Run
        again after Docker was lost midway, it finishes the job: with no `.previous` left,
        a stopped container under the name is the old one (stopped by the replace, or renamed
        back by the restore) and is started."""
        client = self.docker()
        held = previous_name(name)
        if self.inspect(held) is None:
            info = self.inspect(name)
            if info is None or (info.get("State") or {}).get("Running"):
                return False
            call(client, start_container, client, name)
            return True
        self.remove_container(name)
        call(client, client.api.rename, held, name)
        call(client, start_container, client, name)
        return True

    def inspect(self, name: str) -> dict | None:
        return nodehealth.inspect(self.docker(), name)

    # ------------------------------------------------------------ tracker

    def _tracker(self, step: Step) -> None:
        if self.target.systemd:
            self._tracker_unit(step)
            return
        cluster = self.target.cluster
        pidfile = tracker_pidfile(self.state_dir, cluster)
        for running in filter(None, (pidfile, legacy_pidfile(self.state_dir, cluster))):
            stop_pidfile(running)
        if step.action == "delete":
            return
        private_tree(self.state_dir)
        log = open_private(tracker_log(self.state_dir, cluster))
        # The state directory travels in the environment so the command line stays the rendered one.
        process = subprocess.Popen(
            this_conduit(step.desired["command"]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd="/",  # `python -m` looks in the working directory first
            env=dict(os.environ, CONDUIT_STATE_DIR=str(self.state_dir.resolve())),
        )
        log.close()
        atomic_write(pidfile, f"{process.pid}\n")

    def _tracker_unit(self, step: Step) -> None:
        """Where systemd is PID 1, the tracker is a unit the tool owns."""
        unit = self.target.tracker_unit_name
        path = host_path(self.root, f"/etc/systemd/system/{unit}.service")
        if step.action == "delete":
            systemctl("disable", "--now", unit, check=False)
            remove(path)
            systemctl("daemon-reload")
            return
        atomic_write(path, step.desired["unit"], HOST_CONFIG)
        systemctl("daemon-reload")
        systemctl("enable", unit)
        systemctl("restart", unit)


# The one handler of each step kind (tests/test_architecture.py checks that every kind has one).
HANDLERS = {
    Kind.SYSCTL: Executor._sysctl,
    Kind.SYSCTL_FILE: Executor._sysctl_file,
    Kind.NGINX_CONF: Executor._nginx_conf,
    Kind.NGINX_INCLUDE: Executor._nginx_include,
    Kind.NGINX_MAIN: Executor._nginx_main,
    Kind.NGINX: Executor._nginx,
    Kind.NETWORK: Executor._network,
    Kind.VOLUME: Executor._volume,
    Kind.CONTAINER: Executor._container,
    Kind.TRACKER: Executor._tracker,
    Kind.IMAGE: Executor._image_step,
    Kind.BACKENDS: Executor._backends,
    Kind.CANARY: Executor._canary,
    Kind.KEYS: Executor._keys,
    Kind.COMPARTMENT: Executor._compartment,
}


def systemctl(*args: str, check: bool = True) -> None:
    try:
        done = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise StepFailed(f"PID 1 is systemd but {not_installed('systemctl')}") from None
    if check and done.returncode != 0:
        raise StepFailed(f"systemctl {' '.join(args)} failed: {' '.join(done.stderr.split()) or done.returncode}")


def previous_name(name: str) -> str:
    return f"{name}.previous"


def this_conduit(command: list[str]) -> list[str]:
    """The rendered `conduit tracker run …` run by this very interpreter and package.

    `conduit` on PATH may be a wrapper (a pyenv shim, another install) whose process shows a
    command line other than the rendered one, which the next plan would take for drift.
    Run as `python -m conduit …`, the process's command line ends in exactly the rendered one.
    """
    if command and command[0] == "conduit":
        return [sys.executable, "-m", *command]
    return command


def stop_pidfile(pidfile: Path, timeout: float = 10) -> None:
    """Stop the tracker the pidfile names, unless the pid now belongs to something else."""
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        remove(pidfile)
        return
    if b"tracker" not in cmdline:
        remove(pidfile)
        return
    stop_process(pid, timeout)
    remove(pidfile)


STOP_LOOK_SECONDS = 0.1  # the longest pause between looks at a stopping process: a look is a read of /proc


def stop_process(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns once the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
        if _alive(pid):
            for _ in retries(timeout, longest=STOP_LOOK_SECONDS):
                if not _alive(pid):
                    return
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, OSError):
        return False
    return stat[stat.rfind(")") + 2 :].split()[:1] != ["Z"]
