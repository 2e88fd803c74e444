"""Docker's endpoints over plain HTTP/1.1: what plan, status and the agent ask Docker, and the
writes that make nodes (volumes, containers, their starts, stops and removals).

The Docker SDK (docker-py, with requests and urllib3 under it) costs 60-100 ms to import and
about 7 MiB resident; a command that only reads should not pay that, nor an apply that makes
nodes, whose creates and starts run side by side with no connection pool to wait for (each
request has a connection of its own). The methods here carry the SDK APIClient's names and
answers, so a caller cannot tell them apart; anything else asked of an DockerAPI (pulls,
networks) is handed to the SDK client its `fallback` loads on first use. A log (read in pieces up
to a cap: a node's log is what strangers made it say, and could be any size) and the archive's
HEAD (the SDK has no call for it) are asked of either client through container_log and
archive_status, at the end.

Faults: an answer of 400 and above is an APIError (NotFound, ImageNotFound for 404, as the SDK
says them); no answer at all (socket absent or refusing, a broken or late answer) is NoAnswer,
whose text names the OS error as the SDK's did, for conduit.drivers.docker.diagnose.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from typing import Literal
from urllib.parse import quote_plus, urlencode, urlsplit

API_VERSION = "1.41"  # Docker 20.10, the oldest Docker a current Debian ships
DEFAULT_HOST = "unix:///var/run/docker.sock"
TIMEOUT = 60
LOG_CHUNK = 1 << 16  # a log answer is read this much at a time


class DockerException(Exception):
    """Docker did not answer a read as asked."""


class APIError(DockerException):
    """Docker answered with an error status; `explanation` is its message."""

    def __init__(self, message: str, status_code: int, explanation: str):
        super().__init__(message)
        self.status_code, self.explanation = status_code, explanation


class NotFound(APIError):
    pass


class ImageNotFound(NotFound):
    pass


class NoAnswer(DockerException):
    """The daemon did not answer: no socket, refused, reset, or too late."""


class BadAnswer(DockerException, ValueError):
    """The daemon's answer is not the JSON it should be."""


# The same faults as the SDK raises them (writes, and a host only the SDK speaks to). A command
# that never loaded the SDK cannot have raised its faults, so they are not imported to be caught.
def _sdk(*names: str) -> tuple[type, ...]:
    errors = sys.modules.get("docker.errors")
    return tuple(getattr(errors, n) for n in names) if errors else ()


def refusals() -> tuple[type, ...]:
    """What an answered-with-an-error call raises (docker.errors.APIError's)."""
    return (APIError, *_sdk("APIError"))


def not_found() -> tuple[type, ...]:
    return (NotFound, *_sdk("NotFound"))


def image_not_found() -> tuple[type, ...]:
    return (ImageNotFound, *_sdk("ImageNotFound"))


def failures() -> tuple[type, ...]:
    """Every fault of a Docker call: refusals, no answer, a garbled answer."""
    requests_exceptions = sys.modules.get("requests.exceptions")
    return (DockerException, *_sdk("DockerException"), *((requests_exceptions.RequestException,) if requests_exceptions else ()))


# ----------------------------------------------------------------- where Docker is


def endpoint(base_url: str) -> tuple[str, str, int] | None:
    """("unix", socket path, 0) or ("tcp", host, port) for the Docker hosts spoken here; None for
    those only the SDK speaks (ssh://, https://, npipe://, a tcp:// host without a port).
    tcp:// is plain HTTP, as the SDK has it without a TLS configuration."""
    if base_url.startswith("unix://"):
        path = base_url.removeprefix("unix://")
        return ("unix", path, 0) if path.startswith("/") else None
    if not base_url.startswith(("tcp://", "http://")):
        return None
    parts = urlsplit(base_url)
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or not port or parts.path not in ("", "/") or parts.query:
        return None
    return "tcp", parts.hostname, port


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


# ----------------------------------------------------------------- answers


def json_stream(data: bytes) -> list:
    """The JSON values of a stream answer (/events): one after another, newline-separated or not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadAnswer(f"the events answer is not UTF-8: {exc}") from None
    decoder, out, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        if at == len(text):
            return out
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError as exc:
            raise BadAnswer(f"the events answer is not JSON: {exc}") from None
        out.append(value)


class Unframed:
    """The payloads of a multiplexed log answer (a container without a TTY), fed in the pieces they
    arrive in: each frame is 8 bytes (stream 0/1/2, three zero bytes, the payload's size big-endian)
    and the payload. A header may be split between pieces and a payload spread over many: what a
    piece holds of payloads is given at once, never a whole frame held first."""

    def __init__(self) -> None:
        self.header, self.left = b"", 0

    def feed(self, data: bytes) -> bytes:
        out, at = [], 0
        while at < len(data):
            if self.left:
                out.append(data[at : at + self.left])
                self.left -= len(out[-1])
                at += len(out[-1])
                continue
            taken = data[at : at + 8 - len(self.header)]
            self.header += taken
            at += len(taken)
            if len(self.header) == 8:
                self.left, self.header = int.from_bytes(self.header[4:8], "big"), b""
        return b"".join(out)


def first_bytes(pieces: Iterable[bytes], limit: int) -> bytes:
    """The first `limit` bytes of `pieces`; nothing after them is read."""
    kept = bytearray()
    for piece in pieces:
        kept += piece[: limit - len(kept)]
        if len(kept) >= limit:
            break
    return bytes(kept)


def last_bytes(pieces: Iterable[bytes], limit: int) -> bytes:
    """The last `limit` bytes of `pieces`, at most, held no more than that while they are read; when
    more came, from the first line that begins within them (a torn line has no timestamp to read),
    or the end of one line longer than `limit`."""
    kept, cut = bytearray(), False
    for piece in pieces:
        kept += piece
        if len(kept) > limit + 1:  # one byte more: whether the part kept begins a line
            del kept[: len(kept) - limit - 1]  # from the front: CPython moves no bytes for that
            cut = True
    if cut or len(kept) > limit:
        newline = kept.find(b"\n")
        del kept[: newline + 1 if 0 <= newline < len(kept) - 1 else len(kept) - limit]
    return bytes(kept)


def _api_error(status: int, reason: str, url: str, body: bytes) -> APIError:
    """The fault for an error answer, as the SDK classes and words it."""
    try:
        explanation = str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):
        explanation = body.decode(errors="replace").strip()
    cls = APIError
    if status == 404:
        lowered = explanation.lower()
        image = ("no such image", "not found: does not exist or no pull access", "repository does not exist")
        cls = ImageNotFound if any(m in lowered for m in image) else NotFound
    kind = "Client" if status < 500 else "Server"
    message = f"{status} {kind} Error for http+docker://localhost{url}: {reason}"
    return cls(f'{message} ("{explanation}")' if explanation else message, status, explanation)


def _filters(filters: dict | None) -> dict:
    """The filters parameter as the SDK writes it: each value a list of strings, booleans as words."""
    if not filters:
        return {}
    out = {}
    for key, value in filters.items():
        value = ("true" if value else "false") if isinstance(value, bool) else value
        out[key] = [v if isinstance(v, str) else str(v) for v in (value if isinstance(value, list) else [value])]
    return {"filters": json.dumps(out)}


class DockerAPI:
    """Docker's reads for one daemon. `counted` is called once per HTTP request; `fallback` gives
    the SDK's APIClient, which answers any other attribute (the writes)."""

    def __init__(self, where: tuple[str, str, int], counted: Callable[[], None] = lambda: None,
                 fallback: Callable[[], object] | None = None, timeout: float = TIMEOUT):  # fmt: skip
        self.where, self.counted, self.fallback, self.timeout = where, counted, fallback, timeout

    def __getattr__(self, name: str):
        if name.startswith("__") or self.__dict__.get("fallback") is None:
            raise AttributeError(name)
        return getattr(self.fallback(), name)

    def _connection(self) -> http.client.HTTPConnection:
        kind, host, port = self.where
        if kind == "unix":
            return _UnixConnection(host, self.timeout)
        return http.client.HTTPConnection(host, port, timeout=self.timeout)

    def get(self, path: str, params: dict | None = None) -> tuple[bytes, str]:
        """(body, content type) of GET /v{API_VERSION}{path}; one HTTP request on its own connection."""
        return self.request("GET", path, params)

    def request(self, method: str, path: str, params: dict | None = None, body: dict | None = None,
                timeout: float | None = None) -> tuple[bytes, str]:  # fmt: skip
        """(body, content type) of METHOD /v{API_VERSION}{path}, `body` sent as JSON; one HTTP request
        on its own connection, answered within `timeout` seconds (the client's when None)."""
        with self._answer(method, path, params, body, timeout) as response:
            return response.read(), response.getheader("Content-Type") or ""

    @contextmanager
    def _answer(self, method: str, path: str, params: dict | None = None, body: dict | None = None,
                timeout: float | None = None) -> Iterator[http.client.HTTPResponse]:  # fmt: skip
        """Docker's answer to one request, on a connection of its own closed on leaving; an error
        answer is raised as the SDK's fault, a broken exchange as NoAnswer."""
        url = f"/v{API_VERSION}{path}" + (f"?{urlencode(params)}" if params else "")
        self.counted()
        conn = self._connection()
        if timeout is not None:
            conn.timeout = timeout
        try:
            if body is None:
                conn.request(method, url)
            else:
                conn.request(method, url, json.dumps(body).encode(), {"Content-Type": "application/json"})
            response = conn.getresponse()
            if response.status >= 400:
                raise _api_error(response.status, response.reason, url, response.read(LOG_CHUNK))
            yield response
        except (OSError, http.client.HTTPException) as exc:
            raise NoAnswer(f"{type(exc).__name__}: {exc}") from None
        finally:
            conn.close()

    def _json(self, path: str, params: dict | None = None, method: str = "GET", body: dict | None = None,
              timeout: float | None = None):  # fmt: skip
        data, _ = self.request(method, path, params, body, timeout)
        if method != "GET" and not data.strip():
            return None  # 204: done, nothing to say
        try:
            return json.loads(data)
        except ValueError as exc:
            raise BadAnswer(f"Docker's answer to {path} is not JSON: {exc}") from None

    @staticmethod
    def _name(value: str) -> str:
        return quote_plus(value, safe="/:")  # as the SDK puts a name in a path

    def ping(self) -> bool:
        return self.get("/_ping")[0] == b"OK"

    def version(self) -> dict:
        return self._json("/version")

    def containers(self, all: bool = False, filters: dict | None = None) -> list[dict]:  # noqa: A002 - the SDK's name
        return self._json("/containers/json", {"all": int(all), "limit": -1, "size": 0, "trunc_cmd": 0, **_filters(filters)})

    def inspect_container(self, container: str) -> dict:
        return self._json(f"/containers/{self._name(container)}/json")

    def inspect_image(self, image: str) -> dict:
        return self._json(f"/images/{self._name(image)}/json")

    def inspect_distribution(self, image: str) -> dict:
        return self._json(f"/distribution/{self._name(image)}/json")

    def inspect_volume(self, name: str) -> dict:
        return self._json(f"/volumes/{self._name(name)}")

    def volumes(self, filters: dict | None = None) -> dict:
        return self._json("/volumes", _filters(filters))

    def networks(self, names: list[str] | None = None, filters: dict | None = None) -> list[dict]:
        filters = dict(filters or {}) | ({"name": names} if names else {})
        return self._json("/networks", _filters(filters))

    def events(self, since: str, until: str, filters: dict | None = None, decode: bool = True) -> list[dict]:
        """The events between since and until (both given: without an end the answer never ends)."""
        if not decode:
            raise ValueError("events are read decoded")
        body, _ = self.get("/events", {"since": since, "until": until, **_filters(filters)})
        return json_stream(body)

    def pieces(self, path: str, params: dict | None = None) -> Iterator[bytes]:
        """The body of GET /v{API_VERSION}{path} in pieces of at most LOG_CHUNK bytes, as it arrives;
        one HTTP request, on a connection closed when the caller stops reading."""
        with self._answer("GET", path, params) as response:
            while piece := response.read1(LOG_CHUNK):
                yield piece

    # ------------------------------------------------------------ writes

    def create_volume(self, name: str | None = None, driver: str | None = None, driver_opts: dict | None = None,
                      labels: dict | None = None) -> dict:  # fmt: skip
        """Docker's create is idempotent: a volume of that name is answered as it is, labels untouched."""
        body = {"Name": name, "Driver": driver, "DriverOpts": driver_opts} | ({"Labels": labels} if labels else {})
        return self._json("/volumes/create", method="POST", body=body)

    def remove_volume(self, name: str, force: bool = False) -> None:
        self.request("DELETE", f"/volumes/{self._name(name)}", {"force": int(force)} if force else None)

    def create_container_from_config(self, config: dict, name: str | None = None) -> dict:
        """A container from Docker's own create body (conduit.drivers.docker writes it)."""
        return self._json("/containers/create", {"name": name} if name else None, "POST", config)

    def start(self, container: str) -> None:
        self.request("POST", f"/containers/{self._name(container)}/start")

    def stop(self, container: str, timeout: int | None = None) -> None:
        """Docker waits `timeout` seconds for the process before it kills it: the answer may take that long."""
        params = {"t": timeout} if timeout is not None else None
        self.request("POST", f"/containers/{self._name(container)}/stop", params, timeout=self.timeout + (timeout or 10))

    def rename(self, container: str, name: str) -> None:
        self.request("POST", f"/containers/{self._name(container)}/rename", {"name": name})

    def wait(self, container: str, timeout: float | None = None) -> dict:
        """Once the container has exited: {"StatusCode": …}; NoAnswer after `timeout` seconds."""
        return self._json(f"/containers/{self._name(container)}/wait", method="POST", timeout=timeout)

    def remove_container(self, container: str, v: bool = False, link: bool = False, force: bool = False) -> None:
        self.request("DELETE", f"/containers/{self._name(container)}", {"v": int(v), "link": int(link), "force": int(force)})

    def archive_status(self, container: str, path: str) -> int:
        """The status of HEAD of the container's archive at `path`: 200 there, 404 not (nothing is copied)."""
        try:
            self.request("HEAD", f"/containers/{self._name(container)}/archive", {"path": path})
        except APIError as exc:
            return exc.status_code
        return 200


# ----------------------------------------------------------------- either client
# A Docker host only the SDK speaks to (ssh://, https://) has the SDK's APIClient where a DockerAPI
# would be: what the SDK would ask with an extra call, or has no public call for, is asked here of either.


def container_log(api, container: str, tty: bool | None, limit: int, keep: Literal["first", "last"] = "last",
                  timestamps: bool = False, tail: int | str = "all", since: int | None = None) -> bytes:  # fmt: skip
    """The container's log (stdout and stderr) as bytes, no more than `limit` of them: its `keep`
    end (the last are whole lines). Read in pieces, in one request: the caller knows whether the
    container has a TTY (conduit makes its throwaway containers without one; a node's is in the
    inspect answer the caller holds); None asks Docker first, as the SDK's logs() does."""
    if tty is None:
        tty = bool((api.inspect_container(container).get("Config") or {}).get("Tty"))
    params = {"stdout": 1, "stderr": 1, "timestamps": int(timestamps), "follow": 0, "tail": tail} | ({"since": since} if since else {})
    with closing(_log_pieces(api, container, params)) as pieces:
        unframed = Unframed()
        payloads = pieces if tty else (unframed.feed(piece) for piece in pieces)
        return first_bytes(payloads, limit) if keep == "first" else last_bytes(payloads, limit)


def _log_pieces(api, container: str, params: dict) -> Iterator[bytes]:
    """The raw log answer in pieces, from either client; its connection closed when reading stops."""
    if isinstance(api, DockerAPI):
        yield from api.pieces(f"/containers/{api._name(container)}/logs", params)
        return
    response = api._get(api._url("/containers/{0}/logs", container), params=params, stream=True)
    try:
        api._raise_for_status(response)
        yield from response.iter_content(LOG_CHUNK)
    finally:
        response.close()


def archive_status(api, container: str, path: str) -> int:
    """HEAD of the container's archive at `path` (nothing is copied): 200 there, 404 not."""
    if isinstance(api, DockerAPI):
        return api.archive_status(container, path)
    # requests has no timeout of its own: the SDK's calls each pass theirs, and so must this one
    return api.head(api._url("/containers/{0}/archive", container), params={"path": path}, timeout=api.timeout).status_code
