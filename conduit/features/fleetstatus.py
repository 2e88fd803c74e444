"""One view of the fleet: every host's agent asked at once for its summary, one row per host; and the
fleet's exporters as a Prometheus http_sd target list.

The agents' tokens come from a local root-only file, never from the repository the fleet file lives
in: `HOST: {viewer: TOKEN, operator: TOKEN, agent: URL}` (either token or both; the bot's actions on
that host need its operator token). The fleet file, which others may push to, names each host's
agent too, but does not choose where a token goes: a token is sent only to the agent its entry in
the tokens file names, when the fleet file names the same one.
"""

from __future__ import annotations

import json
import os
import ssl
import stat
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from conduit.errors import PolicyError
from conduit.spec.fleet import Fleet, Host
from conduit.spec.policy import UntrustedPath, trusted_path

TOKENS_FILE = Path("/etc/conduit/fleet-tokens.yaml")
MAX_ANSWER = 1 << 20  # a summary is a few KiB; an agent that sends more is not read further
FAILED = ("invalid", "blocked", "rolled_back", "failed")


@dataclass(frozen=True)
class HostTokens:
    """One agent's tokens: a viewer's to read, an operator's to act (either may be missing)."""

    viewer: str | None = None
    operator: str | None = None
    agent: str | None = None  # the only agent these tokens are sent to

    @property
    def reader(self) -> str | None:
        return self.viewer or self.operator


def parse_tokens(data: object) -> dict[str, HostTokens] | None:
    """The tokens file's YAML as {host: HostTokens}, or None when it is not that shape."""
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        return None
    out = {}
    for host, value in data.items():
        if isinstance(value, str):
            out[host] = HostTokens(viewer=value)
        elif isinstance(value, dict) and value and set(value) <= {"viewer", "operator", "agent"} and all(isinstance(v, str) for v in value.values()):
            out[host] = HostTokens(**value)
        else:
            return None
    return out


def read_host_tokens(path: Path) -> dict[str, HostTokens]:
    """{host: its tokens} from a YAML mapping in a file only root can read. Raises PolicyError."""
    try:
        real = trusted_path(str(path))
        st = os.lstat(real)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o077:
            raise PolicyError(f"fleet tokens {path}: must be a file owned by root and readable by no one else; chmod 600 {path}")
        data = yaml.safe_load(Path(real).read_text())
    except FileNotFoundError:
        raise PolicyError(f"fleet tokens {path}: no such file; write `HOST: TOKEN` lines (each agent's viewer token) into it, chmod 600") from None
    except (UntrustedPath, OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"fleet tokens {path}: {' '.join(str(getattr(exc, 'strerror', None) or exc).split())[:200]}") from None
    tokens = parse_tokens(data)
    if tokens is None:
        raise PolicyError(f"fleet tokens {path}: expected a mapping of host name to its tokens and agent "
                          "(`fra-1: {viewer: TOKEN, operator: TOKEN, agent: https://fra-1.example.net:8443}`)")  # fmt: skip
    return tokens


def read_tokens(path: Path) -> dict[str, HostTokens]:
    """{host: its tokens} for the hosts with a token that reads. Raises PolicyError."""
    return {host: t for host, t in read_host_tokens(path).items() if t.reader}


def tokens_for(host: Host, tokens: dict[str, HostTokens]) -> tuple[HostTokens, str | None]:
    """The host's tokens when they may go to the agent the fleet file names for it; else none, and why."""
    mine = tokens.get(host.name)
    if mine is None:
        return HostTokens(), "no token for it in the fleet tokens file"
    if mine.agent is None:
        return HostTokens(), (f"its token goes only to the agent its entry in the fleet tokens file names, and it names none: "
                              f"add `agent: {host.agent}` there once that is its agent")  # fmt: skip
    if (mine.agent or "").rstrip("/") != (host.agent or "").rstrip("/"):
        return HostTokens(), f"the fleet file names {host.agent} as its agent, the fleet tokens file {mine.agent}: its token is not sent"
    return mine, None


@dataclass
class Row:
    """One host as its agent says it is (or that it did not answer)."""

    host: str
    ring: str | None
    agent: str | None
    answered: bool = False
    applied: str | None = None  # the commit the host runs
    attempted: str | None = None  # the newest commit it tried
    ready: bool = False
    why: str = ""
    nodes_up: int | None = None
    nodes: int | None = None
    clients: int | None = None
    bytes: int | None = None
    drift: list[str] | None = None
    last_error: str | None = None
    labels: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class _Unfollowed(urllib.request.HTTPRedirectHandler):
    """A redirect is the agent's answer, not a way elsewhere: urllib would send the token on to
    wherever it points, and a token goes only to the agent the tokens file names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        return None


def _get(url: str, token: str, timeout: float, context: ssl.SSLContext | None) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    opener = urllib.request.build_opener(_Unfollowed(), urllib.request.HTTPSHandler(context=context))
    with opener.open(request, timeout=timeout) as answer:  # the scheme is checked by agent_address
        return json.loads(answer.read(MAX_ANSWER))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value[:500] if isinstance(value, str) else None


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _row_from(row: Row, summary: object) -> Row:
    """The row an agent's summary makes; whatever the agent sent, only values of the right type are taken."""
    summary = _dict(summary)
    totals, watch, generation = _dict(summary.get("totals")), _dict(summary.get("watch")), _dict(summary.get("generation"))
    row.answered = True
    row.nodes, row.nodes_up, row.clients = _int(totals.get("containers")), _int(totals.get("up")), _int(totals.get("connected"))
    row.bytes = (_int(totals.get("bytes_up")) or 0) + (_int(totals.get("bytes_down")) or 0)
    drift = summary.get("drift")
    row.drift = [str(d)[:200] for d in drift] if isinstance(drift, list) else None
    good = generation.get("outcome") == "succeeded"
    row.applied = _str(watch.get("applied_commit")) or (_str(generation.get("git_commit")) if good else None)
    row.attempted = _str(watch.get("attempted_commit")) or _str(watch.get("last_commit")) or row.applied
    row.last_error = _str(watch.get("last_error"))
    alerts = summary.get("alerts")
    return _verdict(row, [str(a)[:200] for a in alerts] if isinstance(alerts, list) else [], _str(watch.get("last_result")))


def _verdict(row: Row, problems: list[str], last_result: str | None) -> Row:
    """Ready, or why not: the agent's alerts, a commit not applied, nodes down, drift."""
    if row.attempted and row.attempted != row.applied:
        said = f"commit {row.attempted[:12]} not applied ({last_result})"
        problems.insert(0, f"{said}: {row.last_error}" if row.last_error else said)
    if not row.nodes or row.nodes_up != row.nodes:
        problems.append(f"{row.nodes_up or 0} of {row.nodes or 0} nodes up")
    if row.drift:
        problems.append(f"drift: {', '.join(row.drift)}")
    row.ready = not problems
    row.why = "; ".join(problems)
    return row


def ask(host: Host, ring: str | None, tokens: dict[str, HostTokens], timeout: float, context: ssl.SSLContext | None) -> Row:
    """One host's row: its agent's summary, or why there is none."""
    row = Row(host.name, ring, host.agent, labels=host.labels.model_dump(exclude_none=True))
    if host.agent is None:
        row.why = "no agent address in the fleet file"
        return row
    mine, why = tokens_for(host, tokens)
    token = mine.reader
    if token is None:
        row.why = why or "no token for it in the fleet tokens file"
        return row
    try:
        return _row_from(row, _get(host.agent.rstrip("/") + "/api/v1/summary", token, timeout, context))
    except urllib.error.HTTPError as exc:
        row.why = f"the agent answered {exc.code}" + (" (is the token right?)" if exc.code in (401, 403) else "")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        row.why = f"no answer within {timeout:g} s" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else f"unreachable: {reason}"
    except ValueError:
        row.why = "the agent's answer is not JSON (is it a conduit agent?)"
    return row


def fleet_status(fleet: Fleet, tokens: dict[str, HostTokens], timeout: float = 5.0, cafile: Path | None = None) -> list[Row]:
    """Every host's row, the agents asked in parallel; in the fleet file's order."""
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    with ThreadPoolExecutor(max_workers=min(32, len(fleet.hosts))) as pool:
        return list(pool.map(lambda h: ask(h, fleet.ring(h), tokens, timeout, context), fleet.hosts))


def sd_targets(fleet: Fleet, tokens: dict[str, HostTokens]) -> list[dict]:
    """Prometheus http_sd_config: each agent's /metrics, labelled with host, ring, provider and region.

    Prometheus sends a host's token to the address listed for it: only an agent the tokens file
    names for its host (conduit.features.fleetstatus.tokens_for) is listed, not one a commit chose."""
    out = []
    for host in fleet.hosts:
        if host.agent is None or tokens_for(host, tokens)[1] is not None:
            continue
        parts = urllib.parse.urlsplit(host.agent)
        labels = {"host": host.name, "ring": fleet.ring(host) or "", "__scheme__": parts.scheme}
        labels |= {k: v for k, v in (("provider", host.labels.provider), ("region", host.labels.region)) if v}
        out.append({"targets": [parts.netloc], "labels": labels})
    return out


# ------------------------------------------------------------------ the row as text (table and fleet page)


def _commit(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return "-"


def cells(row: Row) -> list[str]:
    """The row's cells as the table (and the fleet page) show them."""
    nodes = f"{row.nodes_up}/{row.nodes}" if row.nodes is not None else "-"
    drift = "-" if row.drift is None else (str(len(row.drift)) if row.drift else "none")
    ready = "ready" if row.ready else ("no answer" if not row.answered else "not ready")
    return [row.host, row.ring or "-", _commit(row.applied), _commit(row.attempted), ready, row.why or "", nodes,
            "-" if row.clients is None else str(row.clients), _bytes(row.bytes), drift, row.last_error or ""]  # fmt: skip


HEADERS = ["host", "ring", "applied", "attempted", "ready", "why", "nodes up", "clients", "bytes", "drift", "last error"]
