"""What the bot does with one update: who may ask (the host policy's chats and users; anyone
else is ignored and audited), the read commands answered in one message with a button per host,
and the writes, which need an operator and an inline confirmation and run as the agent's own."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from conduit.bot import views
from conduit.bot.api import Incoming
from conduit.bot.hosts import Host, Unavailable
from conduit.spec.policy import TelegramPolicy

COMMAND = re.compile(r"^/([a-z]+)(?:_([a-z0-9]+))?(?:@\w+)?(?:\s|$)")
NODE_ACTIONS = {"restart", "start", "stop"}
HOST_ACTIONS = {"sync", "rollback", "update"}
CONFIRM_SECONDS = 300


@dataclass
class Pending:
    action: str
    arg: str | None
    user: int
    chat: int
    at: float
    host: int | None = None
    name: str | None = None  # the asker's Telegram name


def parse(text: str | None) -> tuple[str, str | None] | None:
    found = COMMAND.match(text or "")
    return (found.group(1), found.group(2)) if found else None


class Dispatcher:
    def __init__(self, api, hosts: list[Host], policy: TelegramPolicy, audit: Callable[[str, str, dict], None],
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.api, self.hosts, self.policy, self.audit, self.clock = api, hosts, policy, audit, clock
        self.pending: dict[str, Pending] = {}

    # ------------------------------------------------------------ who may ask

    def allowed(self, inc: Incoming) -> bool:
        return inc.chat in self.policy.chats and inc.user in set(self.policy.operators) | set(self.policy.viewers)

    def handle(self, inc: Incoming) -> None:
        if not self.allowed(inc):
            self.audit("bot.refused", f"telegram:{inc.user}", {"chat": inc.chat, "reason": "chat or user not in the host policy"})
            return
        if inc.callback is not None:
            self.api.answer(inc.callback)
            self.on_button(inc)
        else:
            self.on_text(inc)

    # ------------------------------------------------------------ commands

    def on_text(self, inc: Incoming) -> None:
        command = parse(inc.text)
        if command is None:
            return
        name, arg = command
        if name in views.READS:
            return self.read(inc.chat, name)
        if name == "qr" and inc.chat_type != "private":
            self.audit("bot.qr", f"telegram:{inc.user}", {"chat": inc.chat, "status": "refused", "reason": "not a private chat"})
            return self.api.send(inc.chat, "the claim QR code reveals a node's private key: ask for it in a private chat with the bot")
        if name in NODE_ACTIONS | HOST_ACTIONS | {"qr"}:
            return self.ask(inc, name, arg)
        if name == "logs" and arg:
            return self.logs(inc, arg)
        self.api.send(inc.chat, views.HELP)

    def logs(self, inc: Incoming, arg: str) -> None:
        """A node's log is what strangers made it say, and an agent shows it to its operators only: so does the bot."""
        if inc.user not in self.policy.operators:
            return self.refuse_logs(inc)
        self.read(inc.chat, f"logs:{arg}")

    def refuse_logs(self, inc: Incoming) -> None:
        """A viewer who asks for a log, by command or by a button, is told in one line, and it is audited."""
        self.audit("bot.logs", f"telegram:{inc.user}", {"chat": inc.chat, "status": "refused", "reason": "not an operator"})
        self.api.send(inc.chat, "only an operator may read a node's log")

    def read(self, chat: int, what: str) -> None:
        if len(self.hosts) == 1:
            self.api.send(chat, self.view(what, 0))
            return
        lines = [f"{len(self.hosts)} hosts; pick one for its {what.split(':')[0]}:"]
        for host in self.hosts:
            try:
                lines.append(views.host_line(host.name, host.status()))
            except Unavailable as exc:
                lines.append(f"{host.name}: {exc}")
        self.api.send(chat, "\n".join(lines), self.host_buttons(f"v|{what}"))

    def host_buttons(self, prefix: str) -> list[list[tuple[str, str]]]:
        return [[(host.name, f"{prefix}|{i}") for i, host in enumerate(self.hosts)]]

    def view(self, what: str, index: int) -> str:
        host = self.hosts[index]
        try:
            if what.startswith("logs:"):
                return f"{host.name}: {self.node(index, what[5:])}\n" + host.logs(self.node(index, what[5:]))
            return views.READS[what](host.name, host.status())
        except Unavailable as exc:
            return f"{host.name}: {exc}"

    def node(self, index: int, arg: str) -> str:
        for row in self.hosts[index].status()["containers"]:
            if str(row["index"]) == arg:
                return row["name"]
        raise Unavailable(f"no node {arg} on {self.hosts[index].name}")

    # ------------------------------------------------------------ writes

    def ask(self, inc: Incoming, action: str, arg: str | None) -> None:
        user = f"telegram:{inc.user}"
        if inc.user not in self.policy.operators:
            self.audit(f"bot.{action}", user, {"chat": inc.chat, "status": "refused", "reason": "not an operator"})
            self.api.send(inc.chat, f"only an operator may {action}")
            return
        if action == "qr" and not (arg or "").isdigit():
            self.api.send(inc.chat, "say which node: /qr_N")
            return
        if action in NODE_ACTIONS and not arg:
            self.api.send(inc.chat, f"say which node: /{action}_N or /{action}_all")
            return
        key = secrets.token_hex(6)
        self.pending = {k: p for k, p in self.pending.items() if self.clock() - p.at < CONFIRM_SECONDS}
        self.pending[key] = Pending(action, arg, inc.user, inc.chat, self.clock(), 0 if len(self.hosts) == 1 else None, inc.name)
        if len(self.hosts) == 1:
            self.api.send(inc.chat, self.question(self.pending[key]), self.confirm_buttons(key))
        else:
            self.api.send(inc.chat, f"{self.what(action, arg)}: on which host?", self.host_buttons(f"h|{key}"))

    @staticmethod
    def what(action: str, arg: str | None) -> str:
        if action == "qr":
            return f"send the claim QR code of node {arg} (it reveals the node's private key)"
        return f"{action} {'every node' if arg == 'all' else 'node ' + arg}" if action in NODE_ACTIONS else action

    def question(self, p: Pending) -> str:
        return f"{self.what(p.action, p.arg)} on {self.hosts[p.host].name}?"

    @staticmethod
    def confirm_buttons(key: str) -> list[list[tuple[str, str]]]:
        return [[("Yes, do it", f"y|{key}"), ("Cancel", f"n|{key}")]]

    def host_index(self, text: str) -> int | None:
        return int(text) if text.isdigit() and int(text) < len(self.hosts) else None

    def on_button(self, inc: Incoming) -> None:
        parts = (inc.data or "").split("|")
        if parts[0] == "v" and len(parts) == 3 and self.host_index(parts[2]) is not None:
            if parts[1].startswith("logs:") and inc.user not in self.policy.operators:
                return self.refuse_logs(inc)
            self.api.edit(inc.chat, inc.message_id, self.view(parts[1], int(parts[2])), self.host_buttons(f"v|{parts[1]}"))
            return
        pending = self.pending.get(parts[1]) if len(parts) >= 2 else None
        if pending is None or pending.user != inc.user or pending.chat != inc.chat or self.clock() - pending.at >= CONFIRM_SECONDS:
            self.api.edit(inc.chat, inc.message_id, "this question has expired or is someone else's; ask again")
            return
        self.answer_question(inc, parts, pending)

    def answer_question(self, inc: Incoming, parts: list[str], pending: Pending) -> None:
        """A host picked, a yes or a cancel, on a question the same user asked in the same chat."""
        if parts[0] == "h" and len(parts) == 3 and self.host_index(parts[2]) is not None:
            pending.host = int(parts[2])
            self.api.edit(inc.chat, inc.message_id, self.question(pending), self.confirm_buttons(parts[1]))
        elif parts[0] == "n":
            del self.pending[parts[1]]
            self.api.edit(inc.chat, inc.message_id, "cancelled")
        elif parts[0] == "y" and pending.host is not None:
            del self.pending[parts[1]]
            self.api.edit(inc.chat, inc.message_id, self.run(pending))

    @staticmethod
    def node_action(host: Host, p: Pending, node: str) -> str:
        user = f"telegram:{p.user}"
        if p.action == "stop":
            return host.stop(node, user, why=f"from Telegram by {p.name or user}")
        return getattr(host, p.action)(node, user)

    def run(self, p: Pending) -> str:
        host, user = self.hosts[p.host], f"telegram:{p.user}"
        detail = {"host": host.name, "chat": p.chat} | ({"node": p.arg} if p.arg else {})
        try:
            if p.action == "qr":
                node = self.node(p.host, p.arg)
                png = host.claim(node)
                self.api.photo(p.chat, png, f"{node}: Ryve claim code; it reveals the node's private key, keep it private")
                said = f"claim code of {node} sent"
            elif p.action in HOST_ACTIONS:
                said = getattr(host, p.action)(user)
            else:
                names = [r["name"] for r in host.status()["containers"]] if p.arg == "all" else [self.node(p.host, p.arg)]
                said = "\n".join(self.node_action(host, p, name) for name in names)
        except Unavailable as exc:
            self.audit(f"bot.{p.action}", user, detail | {"status": "failed", "reason": str(exc)})
            return f"{host.name}: {exc}"
        self.audit(f"bot.{p.action}", user, detail | {"status": "done"})
        return f"{host.name}: {said}"
