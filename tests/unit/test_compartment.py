"""Personal compartments (Conduit 2.0), by Psiphon-Inc/conduit release-cli-2.0.0:
cli/internal/config/compartment.go:35-75 (the ID), :92-119 (the share token), :183-222 (the file);
cli/internal/config/config.go:195-209 (start reads the file from its data dir).
"""

from __future__ import annotations

import base64
import json

import pytest

from conduit.reconciler.compartment import pairing_token, parse_compartment, token_name, valid_id, wants_compartment
from conduit.reconciler.keyfile import BadKey

ID = base64.b64encode(bytes(range(32))).decode().rstrip("=")  # AAECAwQF... 43 characters


def test_the_file_new_compartment_id_writes_is_read():
    # json.MarshalIndent(persistedCompartment{ID: id}, "", "  ") (compartment.go:192-193)
    assert len(ID) == 43 and valid_id(ID) is None
    assert parse_compartment(('{\n  "id": "' + ID + '"\n}').encode()) == ID


@pytest.mark.parametrize("content", [b"", b"{}", b'{"id": 1}', b'{"id": "' + ID[:-1].encode() + b'"}', b'{"id": "' + ID[:-1].encode() + b'-"}', b'{"id": "' + ID.encode() + b'="}'])
def test_a_file_start_would_refuse_is_refused(content):
    with pytest.raises(BadKey):
        parse_compartment(content)


def test_share_token_is_what_new_compartment_id_prints():
    token = pairing_token(ID, "  my-station ")
    # a struct, so the fields keep their declared order: v, data{id, name}; RawURLEncoding (no padding)
    assert "=" not in token and "+" not in token and "/" not in token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert raw == ('{"v":"1","data":{"id":"' + ID + '","name":"my-station"}}').encode()
    assert json.loads(raw) == {"v": "1", "data": {"id": ID, "name": "my-station"}}


def test_share_token_names_are_limited_as_upstream_limits_them():
    with pytest.raises(BadKey, match="at most 32"):
        pairing_token(ID, "x" * 33)
    with pytest.raises(BadKey, match="empty"):
        pairing_token(ID, "   ")
    assert token_name("conduit-" + "n" * 40) == ("conduit-" + "n" * 40)[:32]


@pytest.mark.parametrize(
    "command, wanted",
    [
        (["start", "-m", "50", "--max-personal-clients", "5", "-d", "/data"], True),
        (["start", "-m", "50", "--max-personal-clients=5"], True),
        (["start", "--max-personal-clients", "0"], False),
        (["start", "--max-personal-clients", "5", "--compartment-id", ID], False),
        (["start", "--set", "InproxyMaxPersonalClients=3"], True),
        (["start", "--set", "InproxyMaxPersonalClients=3", "--set", f"InproxyProxyPersonalCompartmentID={ID}"], False),
        (["--traffic-limit", "100", "--traffic-period", "7", "--", "-m", "5", "--max-personal-clients", "2"], True),
        (["start", "-m", "50"], False),
    ],
)
def test_which_commands_need_a_compartment_in_the_data_dir(command, wanted):
    assert wants_compartment(command) is wanted
