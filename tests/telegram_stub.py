"""A local stand-in for the Telegram Bot API that speaks its HTTP API and records every call.

It answers getMe, getUpdates (long polling: it waits up to `timeout` seconds for an update after
`offset`, and drops those before it, as Telegram does), sendMessage, editMessageText,
answerCallbackQuery and sendPhoto, with bodies as JSON, as a form or as multipart (a photo).
Only one poller may wait on a token: a getUpdates that arrives while another waits ends the
waiting one with 409 Conflict, as Telegram does. `say` and `press` queue what a user does.

`ok=False` refuses every call. `status` answers with that HTTP status; `echo` puts the
request path in the refusal, as an API that repeats the URL it could not serve does:
"path" as it came over the wire, "decoded" with its %-escapes undone.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFLICT = {"ok": False, "error_code": 409,
            "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}  # fmt: skip


def _form_value(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


def parse_body(content_type: str, raw: bytes) -> dict:
    """A Bot API call's parameters, whichever of its three encodings the client used."""
    if content_type.startswith("application/json") or not content_type:
        return json.loads(raw or b"{}")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return {k: _form_value(v[0]) for k, v in urllib.parse.parse_qs(raw.decode(), keep_blank_values=True).items()}
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    body = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        body[name] = payload if part.get_filename() else _form_value(payload.decode())
    return body


class TelegramStub:
    def __init__(self, ok: bool = True, status: int = 200, echo: str | None = None):
        self.requests: list[tuple[str, dict]] = []
        self.updates: list[dict] = []
        self._ids = itertools.count(1)
        self._messages = itertools.count(100)
        self._cond = threading.Condition()
        self._poll = 0  # the serial of the getUpdates that may wait; an older one ends with 409
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm on, the body waited for
            # the client's delayed ACK, 40 ms on every call.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = parse_body(self.headers.get("Content-Type", ""), raw)
                stub.requests.append((self.path, body))
                if not ok:
                    return self._answer(stub.answer(self.path, ok, echo), status)
                code, answer = stub.serve(self.path.rsplit("/", 1)[-1], body)
                self._answer(answer, code)

            do_GET = do_POST  # noqa: N815 - getMe may come as a GET

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
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # ------------------------------------------------------------ what users do

    def say(self, chat: int, user: int, text: str, chat_type: str = "private") -> None:
        self._queue({"message": {"message_id": next(self._messages), "date": int(time.time()), "text": text,
                                 "chat": {"id": chat, "type": chat_type}, "from": self._user(user)}})  # fmt: skip

    def press(self, chat: int, user: int, data: str, message_id: int, chat_type: str = "private") -> None:
        message = {"message_id": message_id, "date": int(time.time()), "chat": {"id": chat, "type": chat_type}, "text": "…"}
        self._queue({"callback_query": {"id": str(next(self._ids)), "from": self._user(user), "chat_instance": "1",
                                        "data": data, "message": message}})  # fmt: skip

    @staticmethod
    def _user(user: int) -> dict:
        return {"id": user, "is_bot": False, "first_name": f"u{user}"}

    def _queue(self, update: dict) -> None:
        with self._cond:
            self.updates.append({"update_id": next(self._ids) + 1000} | update)
            self._cond.notify_all()

    # ------------------------------------------------------------ what the bot did

    def calls(self, method: str) -> list[dict]:
        return [body for path, body in self.requests if path.endswith("/" + method)]

    def wait_calls(self, method: str, count: int = 1, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(found := self.calls(method)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{method}: {len(found)} calls, expected {count}: {self.requests}")
            time.sleep(0.02)
        return found

    # ------------------------------------------------------------ the API

    def serve(self, method: str, body: dict) -> tuple[int, dict]:
        if method == "getUpdates":
            return self._get_updates(body)
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 9, "is_bot": True, "first_name": "conduit", "username": "conduit_bot"}}
        if method in ("sendMessage", "editMessageText", "sendPhoto"):
            chat = int(body["chat_id"])
            message = {"message_id": int(body.get("message_id") or next(self._messages)), "date": int(time.time()),
                       "chat": {"id": chat, "type": "private" if chat > 0 else "group"}, "text": body.get("text", "")}  # fmt: skip
            if method == "sendPhoto":
                message["photo"] = [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]
            return 200, {"ok": True, "result": message}
        if method == "answerCallbackQuery":
            return 200, {"ok": True, "result": True}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def _get_updates(self, body: dict) -> tuple[int, dict]:
        offset = int(body.get("offset") or 0)
        deadline = time.monotonic() + float(body.get("timeout") or 0)
        with self._cond:
            self._poll += 1
            mine = self._poll
            self._cond.notify_all()  # an older waiting poller ends with 409
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            while not self.updates and self._poll == mine and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._poll != mine:
                return 409, CONFLICT
            return 200, {"ok": True, "result": list(self.updates)}

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
