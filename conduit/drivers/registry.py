"""A repository's tags, listed with the Registry HTTP API v2 (`GET /v2/<name>/tags/list`).

Anonymous only: when the registry answers 401 with `WWW-Authenticate: Bearer realm=…` (ghcr.io
and Docker Hub do for public images) an anonymous pull token is fetched from the realm and the
request repeated with it; a registry that wants credentials is an error. Plain http only for a
registry on 127.0.0.0/8 or localhost (Docker's own default for insecure registries), https
otherwise, verified against the system's CA bundle (where a proxy's CA is added). `Link`
pagination is followed. Short timeouts; every failure is one TagsError line.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.parse
import urllib.request

from conduit.facts import registry as text
from conduit.facts.registry import RegistryTextError, Repository

TIMEOUT = 10.0  # seconds, each request
MAX_PAGES = 50
MAX_BYTES = 4 << 20  # a page of tags is a few KiB; Docker Hub's biggest lists a few MiB
ACCEPT = "application/json"


class TagsError(Exception):
    """The registry's tags could not be listed; one line."""


def list_tags(image: str, timeout: float = TIMEOUT) -> list[str]:
    """Every tag of the image's repository, in the registry's order, all pages."""
    try:
        repo = text.repository(image)
    except RegistryTextError as exc:
        raise TagsError(str(exc)) from None
    session = _Session(repo, timeout)
    url: str | None = repo.tags_url
    found: list[str] = []
    for _ in range(MAX_PAGES):
        body, link = session.get(url)
        try:
            found += text.tags(body)
        except RegistryTextError as exc:
            raise TagsError(f"{repo.host}/{repo.name}: {exc}") from None
        url = _next(repo, url, link)
        if url is None:
            return found
    raise TagsError(f"{repo.host}/{repo.name}: the tag list has more than {MAX_PAGES} pages")


def _next(repo: Repository, current: str, link: str | None) -> str | None:
    target = text.next_page(link)
    if target is None:
        return None
    url = urllib.parse.urljoin(current, target)
    if not url.startswith(repo.base + "/"):
        raise TagsError(f"{repo.host}/{repo.name}: the next page of tags is on another host ({url})")
    return url


class _Session:
    """Requests to one registry, with the anonymous token once it asked for one."""

    def __init__(self, repo: Repository, timeout: float):
        self.repo = repo
        self.timeout = timeout
        self.token: str | None = None
        handlers: list[urllib.request.BaseHandler] = [_NoRedirectAcrossSchemes()]
        if repo.insecure:
            handlers.append(urllib.request.ProxyHandler({}))  # a registry on this host is never behind a proxy
        else:
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context()))
        self.opener = urllib.request.build_opener(*handlers)

    def get(self, url: str) -> tuple[bytes, str | None]:
        """The body and Link header of url; fetches the anonymous token when the registry asks."""
        try:
            return self._get(url)
        except urllib.error.HTTPError as exc:
            if exc.code != 401 or self.token is not None:
                raise TagsError(self._refusal(exc)) from None
            challenge = text.bearer_challenge(exc.headers.get("WWW-Authenticate"))
            if challenge is None:
                raise TagsError(f"{self._name()}: the registry wants credentials; conduit asks registries anonymously") from None
            self.token = self._token(challenge)
        try:
            return self._get(url)
        except urllib.error.HTTPError as exc:
            raise TagsError(self._refusal(exc)) from None

    def _get(self, url: str) -> tuple[bytes, str | None]:
        headers = {"Accept": ACCEPT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        with self._open(urllib.request.Request(url, headers=headers)) as resp:
            return _read(resp, self._name()), resp.headers.get("Link")

    def _token(self, challenge: dict[str, str]) -> str:
        realm = challenge["realm"]
        scheme = urllib.parse.urlsplit(realm)
        if scheme.scheme != "https" and not (scheme.scheme == "http" and text.loopback(scheme.netloc)):
            raise TagsError(f"{self._name()}: the registry's token service {realm} is not https")
        query = {"scope": challenge.get("scope") or f"repository:{self.repo.name}:pull"}
        if challenge.get("service"):
            query["service"] = challenge["service"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        try:
            with self._open(urllib.request.Request(url, headers={"Accept": ACCEPT})) as resp:
                return text.token(_read(resp, self._name()))
        except urllib.error.HTTPError as exc:
            raise TagsError(f"{self._name()}: no anonymous token from {realm}: HTTP {exc.code}; conduit asks registries anonymously") from None
        except RegistryTextError as exc:
            raise TagsError(f"{self._name()}: {exc}") from None

    def _open(self, request: urllib.request.Request):
        try:
            return self.opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as exc:
            raise TagsError(f"{self._name()}: cannot reach {request.host}: {_reason(exc.reason)}") from None
        except (OSError, ValueError) as exc:  # timeouts, resets, a bad URL
            raise TagsError(f"{self._name()}: cannot reach {request.host}: {_reason(exc)}") from None

    def _name(self) -> str:
        return f"{self.repo.host}/{self.repo.name}"

    def _refusal(self, exc: urllib.error.HTTPError) -> str:
        if exc.code in (401, 403):
            return f"{self._name()}: the registry refused to list tags anonymously (HTTP {exc.code}); conduit asks registries anonymously"
        if exc.code == 404:
            return f"{self._name()}: no such repository in the registry (HTTP 404)"
        return f"{self._name()}: the registry answered HTTP {exc.code} {exc.reason}"


class _NoRedirectAcrossSchemes(urllib.request.HTTPRedirectHandler):
    """A redirect from https to plain http is refused (a token or a list must not leave TLS)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if req.full_url.startswith("https:") and not newurl.startswith("https:"):
            raise TagsError(f"the registry redirected {req.full_url} to plain http")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _read(resp, name: str) -> bytes:
    body = resp.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise TagsError(f"{name}: an answer larger than {MAX_BYTES >> 20} MiB")
    return body


def _reason(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({reason.verify_message}); add its CA to the system's CA certificates"
    if isinstance(reason, TimeoutError):
        return f"no answer within {TIMEOUT:.0f} s"
    return " ".join(str(reason).split()) or type(reason).__name__
