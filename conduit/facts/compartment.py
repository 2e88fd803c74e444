"""Personal clients (Conduit 2.0): the node's personal compartment and its pairing token.

Upstream, Psiphon-Inc/conduit at release-cli-2.0.0:
- `conduit new-compartment-id [--name N]` (cli/cmd/new_compartment_id.go:38-70) makes 32
  random bytes, RawStd base64 (43 characters), writes {"id": ...} as
  `personal_compartment.json` (0600) in the data dir (config/compartment.go:183-203), and
  prints a share token.
- `conduit start` reads that file from its data dir when no --compartment-id is given
  (config/config.go:195-209); a file that does not parse or validate stops it (:204-205).
- The share token (compartment.go:92-119) is unpadded URL-safe base64 of
  {"v":"1","data":{"id":ID,"name":NAME}} (a struct: fields in that order), the name trimmed,
  non-empty and at most 32 characters. Upstream has no pairing link or URL scheme for it:
  the token itself is what a person pastes into their client.
"""

from __future__ import annotations

import base64

from conduit.facts.keyfile import BadKey, go_json_members, go_json_string, go_string_field
from conduit.spec.start_args import compartment_id_problem

COMPARTMENT_FILE = "personal_compartment.json"
NAME_MAX = 32  # PersonalPairingNameMaxLength, compartment.go:18


def valid_id(compartment_id: str) -> str | None:
    """None when the ID is valid (compartment.go:46-75), else why not."""
    return compartment_id_problem(compartment_id)


def parse_compartment(data: bytes) -> str:
    """The ID a personal_compartment.json holds, exactly when `conduit start` would accept it."""
    compartment_id = go_string_field(go_json_members(data), "id")
    problem = valid_id(compartment_id)
    if problem:
        raise BadKey(problem)
    return compartment_id.strip()


def pairing_token(compartment_id: str, name: str) -> str:
    """The v1 share token `conduit new-compartment-id --name NAME` prints for this compartment."""
    problem = valid_id(compartment_id)
    if problem:
        raise BadKey(problem)
    name = name.strip()
    if not name:
        raise BadKey("the name must not be empty")
    if len(name) > NAME_MAX:
        raise BadKey(f"the name must be at most {NAME_MAX} characters")
    payload = f'{{"v":"1","data":{{"id":{go_json_string(compartment_id.strip())},"name":{go_json_string(name)}}}}}'
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def token_name(node_name: str) -> str:
    """A node's name cut to what a share token may carry."""
    return node_name.strip()[:NAME_MAX] or "conduit"


# ------------------------------------------------------------------ what a node's command asks for


def _flag_value(command: list[str], flag: str) -> str | None:
    """The value of `--flag V` or `--flag=V` in a command line (the last one wins, as in cobra)."""
    found = None
    for i, arg in enumerate(command):
        if arg == flag and i + 1 < len(command):
            found = command[i + 1]
        elif arg.startswith(flag + "="):
            found = arg[len(flag) + 1 :]
    return found


def _overrides(command: list[str]) -> dict[str, str]:
    """The repeatable `--set key=value` overrides (config/set_overrides.go)."""
    out = {}
    for i, arg in enumerate(command):
        pair = command[i + 1] if arg == "--set" and i + 1 < len(command) else arg[6:] if arg.startswith("--set=") else None
        if pair and "=" in pair:
            key, _, value = pair.partition("=")
            out[key.strip()] = value.strip()
    return out


def wants_compartment(command: list[str]) -> bool:
    """The command asks for personal clients and names no compartment: start will read the file."""
    overrides = _overrides(command)
    personal = _flag_value(command, "--max-personal-clients") or overrides.get("InproxyMaxPersonalClients") or "0"
    named = _flag_value(command, "--compartment-id") or overrides.get("InproxyProxyPersonalCompartmentID")
    try:
        return int(personal) > 0 and not named
    except ValueError:
        return False
