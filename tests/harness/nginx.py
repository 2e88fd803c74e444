"""A private nginx (with the stream module) for integration tests.

``NginxServer`` writes a minimal main config into a temp prefix directory and
runs ``nginx -p <prefix> -c <main_conf>`` as a normal daemonised master. The
main config is plain text that callers may edit (for example to add one
``include <file>;`` line in the main context) before calling ``reload()``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


class NginxUnavailable(RuntimeError):
    """nginx or its stream module is missing, or nginx would not start."""


class NginxError(RuntimeError):
    """nginx rejected a configuration or a signal."""


def _children(pid: int) -> set[int]:
    kids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the comm field may hold spaces: the ppid follows the closing parenthesis
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.add(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        return state[state.rfind(")") + 2:].split()[0] != "Z"
    except OSError:
        return False


class NginxServer:
    """A private nginx master. Use as a context manager or call start()/stop().

    Attributes: ``binary``, ``prefix``, ``main_conf``, ``pid_file``,
    ``error_log``, ``include_dir`` (an empty directory for files to include),
    ``stream_module``.
    """

    def __init__(self, extra_main: str = "", binary: str | None = None,
                 stream_module: Path | str = STREAM_MODULE):
        self.binary = binary or shutil.which("nginx") or "/usr/sbin/nginx"
        self.stream_module = Path(stream_module)
        self.extra_main = extra_main
        self.prefix: Path | None = None
        self.main_conf: Path | None = None
        self.pid_file: Path | None = None
        self.error_log: Path | None = None
        self.include_dir: Path | None = None
        self._started = False

    def __enter__(self) -> "NginxServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ config
    def render_main(self) -> str:
        return (
            f"load_module {self.stream_module};\n"
            f"pid {self.pid_file};\n"
            f"error_log {self.error_log};\n"
            "worker_processes 1;\n"
            "events {}\n"
            + (self.extra_main.rstrip("\n") + "\n" if self.extra_main else "")
        )

    def _argv(self, *extra: str) -> list[str]:
        return [self.binary, "-p", f"{self.prefix}/", "-e", str(self.error_log), "-c", str(self.main_conf), *extra]

    def write_include(self, name: str, text: str) -> Path:
        """Write a file into include_dir and return its path."""
        path = self.include_dir / name
        path.write_text(text)
        return path

    def add_main(self, text: str) -> None:
        """Append text (for example an include line) to the main context."""
        with open(self.main_conf, "a") as fh:
            fh.write(text.rstrip("\n") + "\n")

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "NginxServer":
        if not Path(self.binary).exists():
            raise NginxUnavailable(f"nginx not found at {self.binary} (apt-get install nginx)")
        if not self.stream_module.exists():
            raise NginxUnavailable(f"nginx stream module {self.stream_module} not found (apt-get install libnginx-mod-stream)")
        self.prefix = Path(tempfile.mkdtemp(prefix="cdkngx", dir="/tmp"))
        self.prefix.chmod(0o755)
        (self.prefix / "logs").mkdir()
        self.include_dir = self.prefix / "conf.d"
        self.include_dir.mkdir()
        self.main_conf = self.prefix / "nginx.conf"
        self.pid_file = self.prefix / "nginx.pid"
        self.error_log = self.prefix / "error.log"
        self.main_conf.write_text(self.render_main())
        self._started = True
        try:
            res = self.test_config(check=False)
            if res.returncode != 0:
                raise NginxUnavailable(f"nginx -t failed:\n{res.stdout}{res.stderr}")
            res = subprocess.run(self._argv(), capture_output=True, text=True, timeout=30)
            if res.returncode != 0:
                raise NginxUnavailable(f"nginx failed to start (code {res.returncode}):\n{res.stdout}{res.stderr}"
                                       f"\n{self._log_tail()}")
            deadline = time.monotonic() + 10
            while self.master_pid() is None:
                if time.monotonic() > deadline:
                    raise NginxUnavailable(f"nginx wrote no pid file {self.pid_file}\n{self._log_tail()}")
                time.sleep(0.05)
            # the pid file is written before the master forks its workers: a test that looks at
            # them at once on a loaded machine would find none
            while not self.worker_pids():
                if time.monotonic() > deadline:
                    raise NginxUnavailable(f"nginx started no workers\n{self._log_tail()}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        return self

    def master_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError, AttributeError):
            return None
        return pid if _alive(pid) else None

    def worker_pids(self) -> set[int]:
        pid = self.master_pid()
        return _children(pid) if pid else set()

    def test_config(self, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``nginx -t`` on the main config; raise NginxError when check and it fails."""
        res = subprocess.run(self._argv("-t"), capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise NginxError(f"nginx -t failed:\n{res.stdout}{res.stderr}")
        return res

    def reload(self, timeout: float = 10.0) -> None:
        """Test the config, signal a reload and wait until new workers run."""
        self.test_config(check=True)
        before = self.worker_pids()
        res = subprocess.run(self._argv("-s", "reload"), capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise NginxError(f"nginx -s reload failed:\n{res.stdout}{res.stderr}")
        deadline = time.monotonic() + timeout
        while True:
            now = self.worker_pids()
            if now - before:
                return
            if time.monotonic() > deadline:
                raise NginxError(f"nginx did not start new workers after reload\n{self._log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        pid = self.master_pid()
        if pid:
            workers = _children(pid)
            # signal the master directly: "nginx -s quit" re-reads the config
            # first and does nothing when a test left it broken
            try:
                os.kill(pid, signal.SIGQUIT)
            except OSError:
                pass
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            for p in [pid, *workers, *_children(pid)]:
                if _alive(p):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
        if self.prefix is not None:
            shutil.rmtree(self.prefix, ignore_errors=True)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.error_log.read_text(errors="replace").splitlines()
        except (OSError, AttributeError):
            return "(no error log)"
        return "error log:\n" + "\n".join(text[-lines:])
