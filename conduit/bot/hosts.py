"""The hosts the bot answers for: this agent's own (its Agent, the same calls as its REST API)
and the fleet's other agents (their REST API, with an operator token of theirs). Each action is
one of the agent's writes, so it runs conduit.engine's intents and lands in the same audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from conduit.errors import DockerError
from conduit.features.claim import png_code
from conduit.serve.agent import Agent, Refused, outcome_json
from conduit.serve.app import alerts
from conduit.state.holds import Holds


class Unavailable(Exception):
    """What a host cannot do, in one line the operator reads."""


class Host(Protocol):
    name: str

    def status(self) -> dict: ...  # the agent's observation: cluster, containers, totals, countries, generation
    def restart(self, node: str, user: str) -> str: ...
    def start(self, node: str, user: str) -> str: ...
    def stop(self, node: str, user: str, why: str | None = None, until: datetime | None = None) -> str: ...  # held stopped
    def throttle(self, nodes: list[str], user: str, cpus: float, why: str, until: datetime) -> str: ...  # held so; one apply
    def unthrottle(self, nodes: list[str], user: str) -> str: ...  # one apply
    def sync(self, user: str) -> str: ...
    def rollback(self, user: str) -> str: ...
    def update(self, user: str) -> str: ...
    def logs(self, node: str) -> str: ...
    def claim(self, node: str) -> bytes: ...  # the PNG of its claim link


def outcome_line(what: str, answer: dict) -> str:
    """A write's outcome (the agent's JSON of it, conduit.serve.agent.outcome_json), with its warnings beneath."""
    line = f"{what}: {answer['status']}" + (f", generation {answer['generation']}" if answer.get("generation") else "")
    line += f" ({answer['failure']})" if answer.get("failure") else ""
    line += f": {'; '.join(answer['problems'])}" if answer.get("problems") else ""
    return "\n".join([line, *(f"warning: {w}" for w in answer.get("warnings") or ())])


class LocalHost:
    def __init__(self, name: str, agent: Agent):
        self.name, self.agent = name, agent

    def status(self) -> dict:
        try:
            data = self.agent.data()
        except Refused as exc:
            raise Unavailable(str(exc)) from None
        return data | {"alerts": alerts(self.agent, data)}

    def _guard(self, *nodes: str) -> None:
        known = {r["name"] for r in self.status()["containers"]}
        for node in nodes:
            if node not in known:
                raise Unavailable(f"{node} is not a node of {self.name}")

    def _agent(self, act):
        """One of the agent's own actions; what it refuses, or what its Docker daemon cannot do, in one line."""
        try:
            return act()
        except (Refused, DockerError) as exc:
            raise Unavailable(str(exc)) from None

    def restart(self, node: str, user: str) -> str:
        self._agent(lambda: self.agent.restart(node, user))
        return f"{node} restarted"

    def start(self, node: str, user: str) -> str:
        self._agent(lambda: self.agent.start(node, user))
        return f"{node} started"

    def stop(self, node: str, user: str, why: str | None = None, until: datetime | None = None) -> str:
        """Stopped and held so (the agent's stop): applies and the watcher keep it stopped."""
        self._agent(lambda: self.agent.stop(node, user, why, until))
        return f"{node} stopped"

    def throttle(self, nodes: list[str], user: str, cpus: float, why: str, until: datetime) -> str:
        """The nodes' CPU limit held at `cpus` (conduit.state.holds), then set by one apply, in place.
        Unavailable unless that apply succeeded (the holds stay: the next apply sets them)."""
        self._guard(*nodes)
        holds = Holds(self.agent.host.state_dir)
        for node in nodes:
            holds.hold(node, why, until, cpus)
        return self._applied(f"{', '.join(nodes)} throttled", user)

    def unthrottle(self, nodes: list[str], user: str) -> str:
        """The holds released; one apply gives the nodes the spec's CPU limit again, in place."""
        self._guard(*nodes)
        holds = Holds(self.agent.host.state_dir)
        for node in nodes:
            holds.release(node)
        return self._applied(f"{', '.join(nodes)} at full speed", user)

    def _applied(self, what: str, user: str) -> str:
        outcome = self._agent(lambda: self.agent.apply_spec(user))
        if outcome.status not in ("succeeded", "no-op"):
            raise Unavailable(outcome_line(what, outcome_json(outcome)))
        return outcome_line(what, outcome_json(outcome))

    def _write(self, what: str, run) -> str:
        return outcome_line(what, outcome_json(self._agent(run)))

    def sync(self, user: str) -> str:
        return self._write("sync", lambda: self.agent.apply_spec(user))

    def rollback(self, user: str) -> str:
        return self._write("rollback", lambda: self.agent.rollback(None, user))  # the agent chooses, as `conduit rollback` does

    def update(self, user: str) -> str:
        return self._write("update", lambda: self.agent.take_update(user))

    def claim(self, node: str) -> bytes:
        return png_code(self._agent(lambda: self.agent.claim(node))["url"])

    def logs(self, node: str) -> str:
        return "\n".join(self._agent(lambda: self.agent.logs(node))) or "(no output)"


class RemoteHost:
    """Another host's agent, through its API (`client`: an httpx.Client on its base URL): read with
    its viewer token (else its operator token), act and read its nodes' logs with its operator token.
    Its traffic budget (throttle, a stop until the reset) is kept by its own agent, not from here."""

    def __init__(self, name: str, client, viewer: str | None, operator: str | None = None, withheld: str | None = None):
        self.name, self.client, self.withheld = name, client, withheld  # withheld: why its tokens are not sent (fleetstatus.tokens_for)
        self.tokens = {"GET": viewer or operator, "POST": operator}

    def _ask(self, method: str, path: str, body: dict | None = None, role: str | None = None):
        """`role`: the token a read needs when it is not the viewer's (a node's log)."""
        role = role or ("operator" if method == "POST" else "viewer")
        token = self.tokens["POST" if role == "operator" else "GET"]
        if token is None and self.withheld:
            raise Unavailable(self.withheld)
        if token is None:
            raise Unavailable(f"no {role} token for {self.name} in the fleet tokens file; add `{self.name}: {{viewer: TOKEN, operator: TOKEN, agent: URL}}`")
        try:
            answer = self.client.request(method, "/api/v1" + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        except Exception as exc:  # noqa: BLE001 - any failure to reach an agent is one line
            raise Unavailable(f"cannot reach the agent of {self.name}: {type(exc).__name__}") from None
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail")
            except ValueError:
                detail = None
            raise Unavailable(f"the agent of {self.name} answered {answer.status_code}" + (f": {detail}" if detail else ""))
        return answer.json()

    def status(self) -> dict:
        summary = self._ask("GET", "/summary")
        return summary | {"containers": self._ask("GET", "/nodes"), "countries": self._ask("GET", "/countries")}

    def restart(self, node: str, user: str) -> str:
        return self._ask("POST", f"/nodes/{node}/restart")["message"]

    def sync(self, user: str) -> str:
        return outcome_line("sync", self._ask("POST", "/apply"))

    def rollback(self, user: str) -> str:
        return outcome_line("rollback", self._ask("POST", "/rollback"))  # its agent chooses, as `conduit rollback` does

    def start(self, node: str, user: str) -> str:
        return self._ask("POST", f"/nodes/{node}/start")["message"]

    def stop(self, node: str, user: str, why: str | None = None, until: datetime | None = None) -> str:
        if until is not None:
            raise Unavailable(f"a stop until a date is the budget's, and {self.name}'s budget is kept by its own agent")
        return self._ask("POST", f"/nodes/{node}/stop", {"reason": why} if why else None)["message"]

    def _budget_only(self, what: str) -> str:
        raise Unavailable(f"{what} is the traffic budget's, and {self.name}'s budget is kept by its own agent, not from here")

    def throttle(self, nodes: list[str], user: str, cpus: float, why: str, until: datetime) -> str:
        return self._budget_only("throttle")

    def unthrottle(self, nodes: list[str], user: str) -> str:
        return self._budget_only("unthrottle")

    def update(self, user: str) -> str:
        return outcome_line("update", self._ask("POST", "/update"))

    def logs(self, node: str) -> str:
        return "\n".join(self._ask("GET", f"/nodes/{node}/logs", role="operator")["lines"]) or "(no output)"

    def claim(self, node: str) -> bytes:
        """The node's claim link, from its agent (never cached there), drawn here: it is not kept or logged."""
        return png_code(self._ask("POST", f"/nodes/{node}/claim")["url"])
