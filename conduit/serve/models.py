"""The API's shapes: FastAPI checks answers against them and describes them in /openapi.json."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Node(Open):
    name: str
    index: int
    state: str  # Docker's: running, exited, … or missing
    status: str  # one word: announced, starting, throttled, dead, no metrics, stale stats, or Docker's state
    up: bool
    connected: int
    connecting: int
    max_clients: int
    announced: bool
    cpu: float | None
    cpu_limit: float | None  # the spec's
    cpu_limit_seen: float | None = None  # what the container runs with (0: no limit)
    memory: int | None
    memory_limit: int | None  # the spec's
    memory_limit_seen: int | None = None  # what the container runs with (0: no limit)
    restarts: int | None
    uptime: float | None = None
    image: str | None = None
    version: str | None = None
    image_id: str | None = None  # what the node was created from
    digest: str | None = None  # the registry's digest of it, as the last good apply recorded
    image_since: float | None = None  # when the node first ran this image (Unix time)
    bytes_up: int
    bytes_down: int
    lifetime_bytes_up: int | None = None
    lifetime_bytes_down: int | None = None


class Totals(Open):
    containers: int
    running: int
    up: int
    connected: int
    connecting: int
    bytes_up: int
    bytes_down: int


class Budget(BaseModel):
    """The month's traffic budget (spec.budget), as counted since its reset day."""

    used_gb: float
    monthly_gb: float
    percent: float
    resets: str  # the next reset's date, YYYY-MM-DD
    action: str  # at 100 %: stop or throttle
    counting: bool  # false before the agent's first check of this month
    stopped: list[str]  # the nodes the budget stopped or throttled (by `action`) until the reset


class Summary(Open):
    cluster: str
    totals: Totals
    generation: dict | None
    watch: dict | None
    drift: list[str] | None = None
    pending: int | None = None
    observed_at: float | None
    observe_error: str | None = None
    spec_error: str | None = None
    budget: Budget | None = None  # None: the spec sets no budget
    alerts: list[str]


class Country(BaseModel):
    region: str
    clients: int
    bytes_up: int
    bytes_down: int


class Generation(BaseModel):
    id: int
    started: float
    finished: float | None
    outcome: str
    reason: str | None
    spec_hash: str
    spec_path: str | None
    git_commit: str | None
    git_dirty: bool | None
    cluster: str | None = None  # None: recorded before generations named their cluster
    running: bool = False  # the one the host runs (conduit.state.history.running)


class GenerationDetail(Generation):
    spec_text: str
    plan_text: str | None
    journal: list[dict]


class Outcome(BaseModel):
    status: str  # no-op | succeeded | rolled_back | failed | blocked
    generation: int | None
    failure: str | None
    restored: str | None
    warnings: list[str]
    rollback_failed: str | None
    problems: list[str]
    changes: int


class ApplyBody(BaseModel):
    """Empty: apply the current spec (the committed one when the host follows git). `plan`: a plan
    saved by `conduit plan --out`, applied exactly, once the host is seen as it was when it was made."""

    plan: dict | None = None


class StopBody(BaseModel):
    """Why the node is stopped, as status shows it ("stopped <reason>"); default: by the token's name."""

    reason: str | None = Field(default=None, max_length=200)


class NodeLog(BaseModel):
    name: str
    lines: list[str]  # the newest last; at most 50 lines and 3500 bytes, printable characters only


class Done(BaseModel):
    ok: bool
    message: str


class Me(BaseModel):
    name: str
    role: str  # viewer | operator: what the page offers


class PlanView(BaseModel):
    text: str  # as `conduit plan` prints it
    plan: dict
    drift: list[str]
    pending: int
    changes: list[str]  # one line per change: action, kind, id (reason)
    update: dict | None  # a new image behind the tag: versions, digests, taken or why not
    update_text: str  # that update as `text` says it ("" when none): what the dashboard shows


class Point(BaseModel):
    at: int  # the start of the step (Unix time)
    clients: float  # mean connected clients, all nodes
    connecting: float
    bytes_up: int  # moved during the step
    bytes_down: int


class NodeSeries(BaseModel):
    name: str
    uptime: float  # the share of the range's observations in which the node was up
    clients: list[list[float]]  # [at, mean clients]


class CountrySeries(BaseModel):
    region: str
    points: list[list[float]]  # [at, mean clients]


class Countries(BaseModel):
    step: int
    series: list[CountrySeries]


class Bytes(BaseModel):
    bytes_up: int
    bytes_down: int


class Totals3(BaseModel):
    today: Bytes
    month: Bytes
    lifetime: Bytes


class Timeline(BaseModel):
    range: str
    step: int  # seconds between points
    since: int
    points: list[Point]
    nodes: list[NodeSeries]
    countries: Countries
    totals: Totals3


class UpdateCheck(BaseModel):
    update: dict | None  # as PlanView's
    text: str


class Claim(BaseModel):
    name: str
    url: str  # the Ryve claim link: it carries the node's private key
    modules: list[str]  # the QR code's rows, 1 for a dark module
