"""A private image registry (Debian's docker-registry) for integration tests.

``Registry`` runs ``docker-registry serve`` on 127.0.0.1 at a free port, with its own
storage and config in a temp directory. Docker treats registries on 127.0.0.0/8 as
insecure, so a test engine pushes and pulls over plain HTTP with no extra flags.
``push_variant`` builds a small variant of a local image and pushes it, so image-update
tests can make a tag move to a new digest without the network.
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

VARIANT_LABEL = "test.conduit.variant"


class RegistryUnavailable(RuntimeError):
    """docker-registry is missing or would not start."""


class PushError(RuntimeError):
    """Building or pushing a variant image failed."""


class Registry:
    """A private docker-registry. Use as a context manager or call start()/stop().

    Attributes once started: ``address`` ("127.0.0.1:PORT"), ``port``, ``dir``,
    ``config_path``, ``storage``, ``log_path``, ``process``.
    """

    def __init__(self, binary: str = "docker-registry", start_timeout: float = 30.0):
        self.binary = binary
        self.start_timeout = start_timeout
        self.address = ""
        self.port = 0
        self.dir: Path | None = None
        self.config_path: Path | None = None
        self.storage: Path | None = None
        self.log_path: Path | None = None
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Registry":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "Registry":
        from . import free_port  # here: the package imports this module

        binary = shutil.which(self.binary)
        if not binary:
            raise RegistryUnavailable(f"{self.binary} not found (apt-get install docker-registry)")
        self.dir = Path(tempfile.mkdtemp(prefix="conduit-registry-", dir="/tmp"))
        self.storage = self.dir / "storage"
        self.storage.mkdir()
        self.config_path = self.dir / "config.yml"
        self.log_path = self.dir / "registry.log"
        try:
            # the port is free when chosen but may be taken before the registry binds it
            for _ in range(3):
                self.port = free_port()
                self.address = f"127.0.0.1:{self.port}"
                self.config_path.write_text(self._config())
                if self._launch(binary):
                    return self
            raise RegistryUnavailable(self._failure("docker-registry could not bind a free port"))
        except BaseException:
            self.stop()
            raise

    def _config(self) -> str:
        return (
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.address}\n"
        )

    def _launch(self, binary: str) -> bool:
        """Start the process and wait for GET /v2/ to answer 200; False when the port was taken."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "serve", str(self.config_path)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                if "address already in use" in self.log_tail():
                    return False
                raise RegistryUnavailable(self._failure(f"docker-registry exited with code {self.process.returncode}"))
            try:
                with urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RegistryUnavailable(self._failure(
                    f"docker-registry did not answer GET /v2/ within {self.start_timeout:.0f} s"))
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no log)"

    def _failure(self, what: str) -> str:
        return f"{what}\nregistry log {self.log_path}:\n{self.log_tail()}"


def push_variant(engine, registry: Registry, repo: str, tag: str, base_image: str,
                 env: dict[str, str] | None = None) -> str:
    """Build FROM base_image (a local image: no network) with `env` as ENV lines, push it as
    {registry.address}/{repo}:{tag} and return the pushed manifest digest ("sha256:...").

    A fresh label makes each call a different image, so pushing twice moves the tag.
    """
    lines = [f"FROM {base_image}", f"LABEL {VARIANT_LABEL}={secrets.token_hex(8)}"]
    lines += [f"ENV {key}={json.dumps(value)}" for key, value in (env or {}).items()]
    name = f"{registry.address}/{repo}"
    client = engine.client
    try:
        client.images.build(fileobj=io.BytesIO("\n".join(lines).encode()), tag=f"{name}:{tag}",
                            pull=False, rm=True)
    except Exception as exc:  # noqa: BLE001 - reported with the Dockerfile
        raise PushError(f"building {name}:{tag} failed: {exc}\nDockerfile:\n" + "\n".join(lines)) from exc
    digest = None
    for chunk in client.images.push(name, tag=tag, stream=True, decode=True):
        if "error" in chunk or "errorDetail" in chunk:
            raise PushError(f"pushing {name}:{tag} failed: {chunk.get('error') or chunk['errorDetail']}")
        digest = (chunk.get("aux") or {}).get("Digest") or digest
    if not digest:
        raise PushError(f"pushing {name}:{tag} reported no digest")
    return digest
