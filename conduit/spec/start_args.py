"""Values of `conduit start` flags passed through extra_args, refused as the real CLI refuses them.

Upstream (Psiphon-Inc/conduit release-cli-2.0.0, ssmirr/conduit master):
- --set KEY=VALUE (2.0 cli/internal/config/set_overrides.go:19-33, ParseSetOverrides): only
  the allowlisted keys ("unsupported --set key"), each typed: integer, true/false or string
  ("invalid --set value for KEY: expected integer"); InproxyProxyPersonalCompartmentID is
  normalised like --compartment-id.
- --compartment-id (2.0 cli/internal/config/compartment.go NormalizePersonalCompartmentInput
  and ValidatePersonalCompartmentID :46-75): a compartment ID (43 characters of unpadded
  standard base64, 32 bytes) or a v1 share token (unpadded base64url of
  {"v":"1","data":{"id":ID,...}}); anything else stops start ("invalid compartment id or token").
- --idle-restart (ssmirr cli/cmd/start.go:120-130): a Go duration of at least 30m.
Each is refused before a node is created, since the node would exit at start.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

SET_INT = frozenset({
    "InproxyLimitDownstreamBytesPerSecond", "InproxyLimitUpstreamBytesPerSecond", "InproxyMaxClients",
    "InproxyMaxCommonClients", "InproxyMaxPersonalClients", "InproxyReducedLimitDownstreamBytesPerSecond",
    "InproxyReducedLimitUpstreamBytesPerSecond", "InproxyReducedMaxCommonClients",
})  # fmt: skip
SET_BOOL = frozenset({"EmitDiagnosticNotices", "EmitInproxyProxyActivity"})
SET_STRING = frozenset({"InproxyProxyPersonalCompartmentID", "InproxyReducedEndTime", "InproxyReducedStartTime"})
COMPARTMENT_KEY = "InproxyProxyPersonalCompartmentID"

_ID = re.compile(r"[A-Za-z0-9+/]{43}")
_INT = re.compile(r"[+-]?\d+")


def compartment_id_problem(compartment_id: str) -> str | None:
    """None when the ID is valid (compartment.go:46-75), else why not."""
    text = compartment_id.strip()
    if not _ID.fullmatch(text):
        return "a compartment ID is 43 characters of unpadded standard base64"
    if len(base64.b64decode(text + "=")) != 32:
        return "a compartment ID decodes to 32 bytes"
    return None


def _token_id(token: str) -> str | None:
    """The ID a v1 share token carries, or None when it is not one."""
    if "=" in token:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        return None
    data = payload.get("data") if isinstance(payload, dict) and payload.get("v") == "1" else None
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) and compartment_id_problem(found) is None else None


def compartment_input_problem(text: str) -> str | None:
    """None when --compartment-id would take it (an ID or a share token), else the CLI's complaint."""
    text = text.strip()
    if compartment_id_problem(text) is None or (text and _token_id(text) is not None):
        return None
    return "invalid compartment id or token: neither a compartment ID nor a share token"


def set_problem(entry: str) -> str | None:
    """None when --set would take this KEY=VALUE, else the CLI's complaint."""
    key, eq, value = entry.partition("=")
    key, value = key.strip(), value.strip()
    if not eq:
        return f'invalid --set entry "{entry}": expected key=value'
    if key in SET_INT:
        return None if _INT.fullmatch(value) else f"invalid --set value for {key}: expected integer"
    if key in SET_BOOL:
        return None if value in ("true", "false") else f"invalid --set value for {key}: expected true or false"
    if key not in SET_STRING:
        return f'unsupported --set key "{key}"'
    if _INT.fullmatch(value) or value in ("true", "false", "null"):
        return f"invalid --set value for {key}: expected string"
    return compartment_input_problem(value) if key == COMPARTMENT_KEY else None


def flag_values(args: list[str]) -> list[tuple[int, str, str | None]]:
    """(index, long name, value) of each --flag in extra_args: `--flag=V` or `--flag V`."""
    out = []
    for i, arg in enumerate(args):
        if not arg.startswith("--") or arg == "--":
            continue
        name, eq, value = arg[2:].partition("=")
        if not eq:
            following = args[i + 1] if i + 1 < len(args) else None
            value = following if following is not None and not following.startswith("-") else None
        out.append((i, name, value))
    return out
