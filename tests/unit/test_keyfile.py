"""Key files and the Ryve claim link, by the Conduit CLI's own rules.

Upstream (Psiphon-Inc/conduit, tag release-cli-2.0.0; cmd/ryve.go and crypto.go are the same
since release-cli-1.1.0):
- cli/internal/config/config.go:295-313  a key file is kept when it unmarshals into
  {mnemonic, privateKeyBase64 string}, decodes as RawStd base64 or else Std (padded) base64,
  and is 64 bytes (crypto/crypto.go:106-109); otherwise :315-349 write a NEW key.
- cli/cmd/ryve.go:94        key = crypto.KeyPairToBase64NoPad(kp)
- cli/internal/crypto/crypto.go:120-134  seed (32) + public half (32), RawStdEncoding: 86 chars
- cli/cmd/ryve.go:108-123   json.Marshal(map[string]any{"version": 1, "data": {"name", "key"}}),
  base64.URLEncoding (padded), prefixed with network.ryve.app://(app)/conduits?claim=
"""

from __future__ import annotations

import base64
import binascii
import json

import pytest

from conduit.facts.keyfile import BadKey, CLAIM_PREFIX, check_key, claim_url, ed25519_public, go_json_string, parse_key

# RFC 8032 section 7.1, test 1: a fixed Ed25519 seed and its public key.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RAW_B64 = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg"


def key_file(encoded: str = RAW_B64, **extra) -> bytes:
    # As the CLI writes it: json.MarshalIndent(pk, "", "  ") (config.go:336)
    return json.dumps({"mnemonic": "abandon " * 23 + "art", "privateKeyBase64": encoded, **extra}, indent=2).encode()


def strict_urlsafe_b64decode(text: str) -> bytes:
    """URL-safe base64 that must carry its padding: any other character or length is an error."""
    if len(text) % 4 or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=" for c in text):
        raise binascii.Error("not padded URL-safe base64")
    return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)


def test_public_key_of_the_rfc8032_seed():
    assert ed25519_public(SEED) == PUBLIC
    assert base64.b64encode(SEED + PUBLIC).decode().rstrip("=") == RAW_B64 and len(RAW_B64) == 86


def test_claim_url_is_byte_for_byte_what_ryve_claim_prints():
    url = claim_url(key_file(), "conduit-2")
    # Go's json.Marshal of a map sorts its keys: data before version, key before name; no spaces.
    expected_payload = '{"data":{"key":"' + RAW_B64 + '","name":"conduit-2"},"version":1}'
    assert url == CLAIM_PREFIX + base64.urlsafe_b64encode(expected_payload.encode()).decode()
    assert url == (
        "network.ryve.app://(app)/conduits?claim=eyJkYXRhIjp7ImtleSI6Im5XR3huZS85V21DNmhFcjBrdXdzeEVSSnhXbDdNbWtaY0R1c0F4eXVm"
        "MkRYV3BnQmdyRUt0OVZML3RQSlpBYzZEdUZ5ODlxbUl5V3ZBaHBvOXdkUkdnIiwibmFtZSI6ImNvbmR1aXQtMiJ9LCJ2ZXJzaW9uIjoxfQ=="
    )
    decoded = json.loads(strict_urlsafe_b64decode(url[len(CLAIM_PREFIX) :]))
    assert decoded == {"version": 1, "data": {"name": "conduit-2", "key": RAW_B64}}
    assert len(decoded["data"]["key"]) == 86 and base64.b64decode(decoded["data"]["key"] + "==") == SEED + PUBLIC


def test_a_padded_key_file_is_re_encoded_without_padding():
    padded = key_file(RAW_B64 + "==")
    assert parse_key(padded) == SEED + PUBLIC
    assert claim_url(padded, "n") == claim_url(key_file(), "n")  # not copied verbatim from the file


def test_a_key_split_over_lines_is_read_as_go_reads_it():
    # Go's base64 decoders skip \r and \n (encoding/base64: "New line characters are ignored").
    assert parse_key(key_file(RAW_B64[:40] + "\r\n" + RAW_B64[40:])) == SEED + PUBLIC


def test_names_are_escaped_as_go_escapes_them():
    assert go_json_string('a<b>&"\\\n\t\b\f\x01\u2028é') == '"a\\u003cb\\u003e\\u0026\\"\\\\\\n\\t\\b\\f\\u0001\\u2028é"'
    url = claim_url(key_file(), "Café <1>")
    assert '"name":"Café \\u003c1\\u003e"' in strict_urlsafe_b64decode(url[len(CLAIM_PREFIX) :]).decode()


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b"null", "no privateKeyBase64"),
        (b'{"mnemonic": "a"}', "no privateKeyBase64"),
        (b'{"privateKeyBase64": 5}', "not a string"),
        (b'{"mnemonic": 5, "privateKeyBase64": "' + RAW_B64.encode() + b'"}', "mnemonic is not a string"),
        (key_file("QUJD"), "3 bytes, not 64"),
        (key_file(RAW_B64 + "="), "not base64"),
        (key_file(RAW_B64[:-2] + "-_"), "not base64"),
        (key_file(base64.b64encode(SEED).decode()), "32 bytes, not 64"),
        (b"\xef\xbb\xbf" + key_file(), "byte-order mark"),
    ],
)
def test_what_the_cli_would_replace_with_a_new_key_is_refused(content, reason):
    with pytest.raises(BadKey, match=reason):
        parse_key(content)
    with pytest.raises(BadKey):
        check_key(content)


def test_field_names_match_case_insensitively_and_the_last_one_wins():
    # encoding/json matches struct fields case-insensitively; a later duplicate overwrites.
    assert parse_key(b'{"PRIVATEKEYBASE64": "' + RAW_B64.encode() + b'"}') == SEED + PUBLIC
    with pytest.raises(BadKey, match="3 bytes"):
        parse_key(b'{"privateKeyBase64": "' + RAW_B64.encode() + b'", "privatekeybase64": "QUJD"}')


def test_a_key_whose_halves_do_not_belong_together_is_refused_for_writing():
    other = bytes(32)
    mismatched = key_file(base64.b64encode(SEED + other).decode().rstrip("="))
    assert parse_key(mismatched) == SEED + other  # the CLI itself would keep it (length only) ...
    with pytest.raises(BadKey, match="public half"):
        check_key(mismatched)  # ... but its signatures would not verify: never written into a volume
    assert check_key(key_file()) == SEED + PUBLIC


def test_claim_of_a_malformed_key_fails_as_ryve_claim_does():
    with pytest.raises(BadKey):
        claim_url(b'{"mnemonic": "a b c", "privateKeyBase64": "QUJD"}', "conduit-2")
