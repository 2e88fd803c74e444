"""A local stand-in for the Telegram Bot API: records every sendMessage it receives.

`ok=False` refuses every message. `status` answers with that HTTP status; `echo` puts the
request path in the refusal, as an API that repeats the URL it could not serve does:
"path" as it came over the wire, "decoded" with its %-escapes undone.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TelegramStub:
    def __init__(self, ok: bool = True, status: int = 200, echo: str | None = None):
        self.requests: list[tuple[str, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                stub.requests.append((self.path, body))
                self._answer(stub.answer(self.path, ok, echo), status)

            def _answer(self, answer: dict, code: int) -> None:
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def answer(path: str, ok: bool, echo: str | None) -> dict:
        if ok:
            return {"ok": True, "result": {}}
        if echo == "path":
            return {"ok": False, "error_code": 404, "description": f"Not Found: no method at {path}"}
        if echo == "decoded":
            return {"ok": False, "error_code": 404, "description": f"Not Found: no method at {urllib.parse.unquote(path)}"}
        return {"ok": False, "description": "Bad Request: chat not found"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
