"""The hosts the bot answers for when the agent serves a fleet (`conduit serve --fleet`): every host
of the fleet file, in its order; this agent's own (the one named by `--host`) through its Agent, the
others through their agents' API with their tokens from the fleet tokens file. Both files are read
when the agent starts."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from conduit.log import logger
from conduit.bot.hosts import Host, LocalHost, RemoteHost
from conduit.features.fleetstatus import read_host_tokens, tokens_for
from conduit.errors import PolicyError
from conduit.serve.agent import Agent, Refused
from conduit.serve.fleet import FleetFiles

log = logger("conduit.bot")


def _client(base_url: str):
    import httpx  # python-telegram-bot's own HTTP client: there whenever the bot is

    return httpx.Client(base_url=base_url, verify=ssl.create_default_context())


def fleet_hosts(files: FleetFiles, agent: Agent, connect: Callable[[str], object] = _client) -> list[Host]:
    """Raises PolicyError, one line, when the fleet file or the tokens file cannot be used."""
    try:
        fleet = files.load()
    except Refused as exc:
        raise PolicyError(f"the bot's fleet: {exc}; fix {files.fleet}") from None
    tokens = read_host_tokens(files.tokens)
    hosts: list[Host] = []
    if files.host not in {h.name for h in fleet.hosts}:
        log.warning("bot.not_in_fleet", host=files.host, fleet=str(files.fleet))
        hosts.append(LocalHost(files.host, agent))
    for host in fleet.hosts:
        if host.name == files.host:
            hosts.append(LocalHost(host.name, agent))
        elif host.agent is None:
            log.info("bot.no_agent", host=host.name)  # no API to ask: `conduit fleet status` says so too
        else:
            mine, why = tokens_for(host, tokens)
            withheld = why if host.name in tokens else None
            hosts.append(RemoteHost(host.name, connect(host.agent), mine.viewer, mine.operator, withheld))
    return hosts
