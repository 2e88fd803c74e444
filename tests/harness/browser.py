"""Debian's headless chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe):
JSON messages ended by NUL on file descriptors 3 (to the browser) and 4 (from it). No WebDriver."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


class BrowserError(Exception):
    pass


class Browser:
    """One headless chromium with one page open at `url`; `evaluate` runs JavaScript in it."""

    def __init__(self, url: str, width: int = 1280, height: int = 900):
        binary = shutil.which("chromium")
        if binary is None:
            raise BrowserError("chromium is not installed (apt-get install chromium)")
        # A profile of its own: browsers of tests running side by side must not share one.
        self.profile = tempfile.mkdtemp(prefix="cdk-chromium-")
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 f"--user-data-dir={self.profile}", "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"]  # fmt: skip
        # The shell hands the process's stdin and stdout to chromium as descriptors 3 and 4.
        # A session of its own: closing ends chromium's helpers (zygotes, renderers, utilities) with it.
        self.process = subprocess.Popen(["sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null', binary, *flags],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        start_new_session=True)  # fmt: skip
        self.answers: dict[int, dict] = {}
        self.arrived = threading.Condition()
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        try:
            page = next(t for t in self.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
            self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            self.send("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height, deviceScaleFactor=1, mobile=width < 600)
            self.send("Page.navigate", session=True, url=url)
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        buffer = b""
        while chunk := self.process.stdout.read1(65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self.arrived:
                        self.answers[message["id"]] = message
                        self.arrived.notify_all()

    def send(self, method: str, session: bool = False, timeout: float = 20, **params: Any) -> dict:
        self.next_id += 1
        ident = self.next_id
        message = {"id": ident, "method": method, "params": params} | ({"sessionId": self.session} if session else {})
        self.process.stdin.write(json.dumps(message).encode() + b"\0")
        self.process.stdin.flush()
        with self.arrived:
            if not self.arrived.wait_for(lambda: ident in self.answers, timeout=timeout):
                raise BrowserError(f"chromium did not answer {method} within {timeout} s")
            answer = self.answers.pop(ident)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", session=True, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float) -> float:
        """Seconds until `expression` is true in the page; BrowserError past `timeout`. An error while
        the page is still loading (the expression reads what is not there yet) counts as false."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            try:
                if self.evaluate(expression):
                    return time.monotonic() - began
            except BrowserError:
                pass
            time.sleep(0.05)
        raise BrowserError(f"not true within {timeout} s: {expression}")

    def press(self, key: str, code: int, shift: bool = False) -> None:
        """A key pressed and released as a person does (Tab: "Tab", 9), so :focus-visible applies."""
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", session=True, type=kind, key=key, code=key, windowsVirtualKeyCode=code, modifiers=8 if shift else 0)

    def screenshot(self, path: Path, full: bool = False, band: tuple[int, int] | None = None) -> bytes:
        """The page as drawn now (Page.captureScreenshot), written to `path` as PNG; its bytes. `full`:
        the whole page, below the window too, at the page's height (Page.getLayoutMetrics); `band`:
        (top, height) of the whole page, a part to read at full size."""
        shape: dict = {}
        if full or band:
            page_height = math.ceil(self.send("Page.getLayoutMetrics", session=True)["cssContentSize"]["height"])
            top, height = band or (0, page_height)
            clip = {"x": 0, "y": top, "width": self.evaluate("window.innerWidth"), "height": min(height, page_height - top), "scale": 1}
            shape = {"captureBeyondViewport": True, "clip": clip}
        png = base64.b64decode(self.send("Page.captureScreenshot", session=True, format="png", **shape)["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return png

    def close(self) -> None:
        """chromium and every helper of its session are gone, and so is its profile."""
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        # Waited for, not reaped: until it is, no other process group can take its number.
        while time.monotonic() < deadline and self._running():
            time.sleep(0.05)
        self._signal(signal.SIGKILL)  # helpers that outlived it would write on into the profile
        self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _running(self) -> bool:
        try:
            return os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:  # reaped already
            return False

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except OSError:  # the group is empty
            pass
