"""What a node's conduit_key.json holds, read by the same rules the Conduit CLI reads it with.

The real node keeps a key file only when it parses (Psiphon-Inc/conduit cli/internal/config/
config.go:295-313 at release-cli-2.0.0): JSON into {mnemonic, privateKeyBase64} strings, the
key unpadded standard base64 or, failing that, padded (:299-302), exactly 64 bytes
(crypto/crypto.go:106-109). Anything else and it silently makes a NEW key (:315-349), and the
node's reputation is gone. So a key is checked here before the tool writes one into a volume.

The Ryve claim link is built as `conduit ryve-claim` builds it (cmd/ryve.go:94-123):
URL-safe base64 WITH padding of Go's json.Marshal of {"version":1,"data":{"name","key"}}
(a map: keys sorted, HTML characters escaped), the key re-encoded as 86 characters of
unpadded standard base64 of seed + public half (crypto.go:120-134).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

KEY_BYTES = 64
CLAIM_PREFIX = "network.ryve.app://(app)/conduits?claim="

_RAW = re.compile(r"[A-Za-z0-9+/]*")
_PADDED = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class _Object(list):
    """A JSON object's members in order (so duplicates and case are seen as Go sees them)."""


class BadKey(ValueError):
    """Not a key the Conduit CLI would keep; the message says why, in a few words."""


# ------------------------------------------------------------------ Go's rules, re-stated


def go_json_members(data: bytes) -> list[tuple[str, object]]:
    """The top-level JSON object's members in order, as Go's decoder accepts them."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise BadKey("it starts with a byte-order mark, which Go's JSON decoder rejects")

    def no_constants(name: str):
        raise BadKey(f"{name} is not JSON")

    try:
        parsed = json.loads(data.decode("utf-8", errors="replace"), object_pairs_hook=_Object, parse_constant=no_constants)
    except ValueError as exc:
        raise BadKey(f"it is not JSON ({exc.args[0].split(':')[0]})") from None
    if parsed is None:
        return []
    if not isinstance(parsed, _Object):
        raise BadKey("it is not a JSON object")
    return parsed


def go_string_field(members: list[tuple[str, object]], name: str) -> str:
    """A string field as encoding/json fills a struct: exact or case-folded name, last one wins."""
    value = ""
    for key, item in members:
        if key != name and key.casefold() != name.casefold():
            continue
        if item is None:
            continue  # null leaves a Go string as it was
        if not isinstance(item, str):
            raise BadKey(f"{name} is not a string")
        value = item
    return value


def go_b64decode(text: str, padded: bool) -> bytes | None:
    """Go's base64 Std/RawStd DecodeString (which skip \\r and \\n), or None where Go fails."""
    text = text.replace("\r", "").replace("\n", "")
    if padded:
        if len(text) % 4 or not _PADDED.fullmatch(text):
            return None
    elif len(text) % 4 == 1 or not _RAW.fullmatch(text):
        return None
    return base64.b64decode(text + "=" * (-len(text) % 4))


def parse_key(data: bytes) -> bytes:
    """The 64-byte private key a key file holds, exactly when the Conduit CLI would keep it."""
    members = go_json_members(data)
    go_string_field(members, "mnemonic")  # a non-string mnemonic fails Go's Unmarshal too
    encoded = go_string_field(members, "privateKeyBase64")
    if not encoded:
        raise BadKey("it has no privateKeyBase64")
    raw = go_b64decode(encoded, padded=False)
    if raw is None:
        raw = go_b64decode(encoded, padded=True)
    if raw is None:
        raise BadKey("privateKeyBase64 is not base64")
    if len(raw) != KEY_BYTES:
        raise BadKey(f"privateKeyBase64 holds {len(raw)} bytes, not {KEY_BYTES}")
    return raw


def check_key(data: bytes) -> bytes:
    """parse_key, and the public half must be the seed's: else the node's signatures are void."""
    raw = parse_key(data)
    if ed25519_public(raw[:32]) != raw[32:]:
        raise BadKey("its public half is not the public key of its seed")
    return raw


# ------------------------------------------------------------------ Ed25519 (RFC 8032 5.1.5)

_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960


def _add(a: tuple, b: tuple) -> tuple:
    """Point addition in extended twisted Edwards coordinates (X, Y, Z, T)."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e1 = (y1 - x1) * (y2 - x2) % _P
    e2 = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = e2 - e1, d - c, d + c, e2 + e1
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def ed25519_public(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte Ed25519 seed."""
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar = (scalar & ((1 << 254) - 8)) | (1 << 254)
    point, base = (0, 1, 1, 0), (_BX, _BY, 1, _BX * _BY % _P)
    while scalar:
        if scalar & 1:
            point = _add(point, base)
        base = _add(base, base)
        scalar >>= 1
    x, y, z, _ = point
    inverse = pow(z, _P - 2, _P)
    x, y = x * inverse % _P, y * inverse % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


# ------------------------------------------------------------------ Go's json.Marshal of strings

_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
               "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}  # fmt: skip


def go_json_string(text: str) -> str:
    """A string as Go's encoding/json (1.22+) writes it: HTML-safe, other characters raw UTF-8."""
    out = ['"']
    for char in text:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        elif 0xD800 <= ord(char) <= 0xDFFF:
            out.append("\ufffd")  # not valid UTF-8: Go writes the replacement character
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def claim_payload(key: bytes, name: str) -> bytes:
    """json.Marshal(map{"version":1,"data":map{"name":name,"key":key}}): map keys come out sorted."""
    # seed + public half, as crypto.KeyPairToBase64NoPad copies them: the 64 key bytes again
    encoded = base64.b64encode(key[:KEY_BYTES]).decode().rstrip("=")
    return f'{{"data":{{"key":{go_json_string(encoded)},"name":{go_json_string(name)}}},"version":1}}'.encode()


def claim_url(key_json: bytes, name: str) -> str:
    """The Ryve claim link of a node, byte for byte as `conduit ryve-claim --name NAME` makes it.

    It carries the private key: a secret. Raises BadKey where ryve-claim fails to load the key.
    """
    payload = claim_payload(parse_key(key_json), name)
    return CLAIM_PREFIX + base64.urlsafe_b64encode(payload).decode()
