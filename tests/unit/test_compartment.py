"""Personal compartments (Conduit 2.0), by Psiphon-Inc/conduit release-cli-2.0.0:
cli/internal/config/compartment.go:35-75 (the ID), :92-119 (the share token), :183-222 (the file);
cli/internal/config/config.go:195-209 (start reads the file from its data dir).
"""

from __future__ import annotations

import base64
import json

import pytest

from conduit.facts.compartment import pairing_token, parse_compartment, token_name, valid_id, wants_compartment
from conduit.facts.keyfile import BadKey

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


# ------------------------------------------------------------------ made once per node, before it starts

from pathlib import Path  # noqa: E402

from conduit.drivers.dockerapi import DockerAPI
from conduit.errors import CompartmentProblem
from conduit.execute.compartment import ensure_compartment


class FakeApi(DockerAPI):
    """Runs `conduit new-compartment-id` as upstream does: writes {"id": …} into the data dir.
    A DockerAPI in type only: none of its requests is made."""

    def __init__(self, folder: Path, exit_code: int = 0):
        self.folder, self.exit_code, self.runs, self.removed = folder, exit_code, [], []

    def create_container_from_config(self, config):
        self.runs.append((config["Image"], config["Entrypoint"] + config["Cmd"], config["HostConfig"]))
        return {"Id": f"c{len(self.runs)}"}

    def start(self, cid):
        if self.exit_code == 0:
            (self.folder / "personal_compartment.json").write_text('{\n  "id": "' + ID + '"\n}')

    def wait(self, cid, timeout):
        return {"StatusCode": self.exit_code}

    def inspect_container(self, cid):
        raise AssertionError("the throwaway container is made without a TTY: no inspect asks")

    def pieces(self, path, params):
        """Docker's framed answer (stderr) to the one log request, its last lines only."""
        assert path == "/containers/c1/logs" and params["tail"] == 20
        said = b"Error: --name must be at most 32 characters\n\x1b[0m\n"
        yield bytes([2, 0, 0, 0]) + len(said).to_bytes(4, "big") + said

    def remove_container(self, cid, force):
        self.removed.append(cid)


class FakeClient:
    def __init__(self, api):
        self.api = api


def test_the_compartment_is_made_once_in_a_throwaway_container(tmp_path):
    api = FakeApi(tmp_path)
    assert ensure_compartment(FakeClient(api), tmp_path, "img:2.0.0", "n-data-1", "/home/conduit/data", "n-1") is True
    ((image, argv, host_config),) = api.runs
    assert image == "img:2.0.0" and argv == ["conduit", "new-compartment-id", "--data-dir", "/home/conduit/data", "--name", "n-1"]
    assert host_config == {"Binds": ["n-data-1:/home/conduit/data:rw"], "NetworkMode": "none", "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges:true"]}
    assert api.removed == ["c1"]
    # kept for good: the next apply (or a replace) does not make another
    assert ensure_compartment(FakeClient(api), tmp_path, "img:2.0.0", "n-data-1", "/home/conduit/data", "n-1") is False
    assert len(api.runs) == 1


def test_a_failed_run_or_an_unusable_file_is_one_line(tmp_path):
    api = FakeApi(tmp_path, exit_code=1)
    try:
        ensure_compartment(FakeClient(api), tmp_path, "img", "v", "/data", "n-1")
    except CompartmentProblem as exc:
        assert str(exc) == "conduit new-compartment-id for n-1 exited 1: Error: --name must be at most 32 characters"
    else:
        raise AssertionError("no error")
    assert api.removed == ["c1"]
    (tmp_path / "personal_compartment.json").write_text('{"id": "nope"}')
    try:
        ensure_compartment(FakeClient(FakeApi(tmp_path)), tmp_path, "img", "v", "/data", "n-1")
    except CompartmentProblem as exc:
        assert "conduit start would refuse it" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("an unusable compartment was overwritten")
