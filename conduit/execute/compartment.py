"""Making a node's personal compartment, once, before it first starts (Conduit 2.0 personal clients).

What a compartment file is and when a node's command wants one: conduit.facts.compartment.
"""

from __future__ import annotations

from pathlib import Path

from conduit.drivers.docker import answers
from conduit.drivers.dockerapi import container_log
from conduit.drivers.volume import IDENTITY_LIMIT, read_entry
from conduit.errors import CompartmentProblem
from conduit.facts.compartment import COMPARTMENT_FILE, parse_compartment, token_name
from conduit.facts.keyfile import BadKey
from conduit.facts.nodelog import printable, quote

SAID_LINES, SAID_LIMIT = 20, 1 << 16  # what is read of a failed run's output: its last line is quoted


def _existing(folder: Path, volume: str, node: str) -> bool:
    """True when the volume already holds a usable compartment; refuses one `start` would refuse.

    HostileEntry when the node planted a link or a special file in its place."""
    data = read_entry(folder, volume, COMPARTMENT_FILE, IDENTITY_LIMIT, node)
    if data is None:
        return False
    try:
        parse_compartment(data)
    except BadKey as exc:
        raise CompartmentProblem(
            f"{folder / COMPARTMENT_FILE}: conduit start would refuse it ({exc}); restore it from a key backup or remove it"
        ) from None
    return True


def _run_once(client, image: str, volume: str, data_dir: str, name: str) -> None:
    """`conduit new-compartment-id --data-dir D --name N` in a throwaway container on the node's volume.

    Raises DockerError when Docker does not answer."""
    with answers(client):
        _run(client.api, image, volume, data_dir, name)


def _run(api, image: str, volume: str, data_dir: str, name: str) -> None:
    command = ["new-compartment-id", "--data-dir", data_dir, "--name", token_name(name)]
    container = api.create_container_from_config({
        "Image": image, "Cmd": command, "Entrypoint": ["conduit"], "Labels": {"io.conduit.role": "new-compartment-id"},
        # As the nodes run by default: no capability, no privilege gained, no network.
        "HostConfig": {"Binds": [f"{volume}:{data_dir}:rw"], "NetworkMode": "none", "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges:true"]},
    })  # fmt: skip
    try:
        api.start(container["Id"])
        code = api.wait(container["Id"], timeout=120).get("StatusCode")
        if code != 0:
            said = container_log(api, container["Id"], tty=False, limit=SAID_LIMIT, tail=SAID_LINES)  # made without a TTY
            last = quote([printable(line) for line in said.decode(errors="replace").splitlines()], count=1)
            raise CompartmentProblem(f"conduit new-compartment-id for {name} exited {code}: {last or 'no output'}")
    finally:
        api.remove_container(container["Id"], force=True)


def ensure_compartment(client, folder: Path, image: str, volume: str, data_dir: str, name: str) -> bool:
    """Give the node's volume a personal compartment unless it has one; True when one was made.

    Made once, before the node first starts, and kept in the volume for good: the people
    paired with it depend on it. `start` reads it from its data dir (config.go:195-209).
    """
    if _existing(folder, volume, name):
        return False
    _run_once(client, image, volume, data_dir, name)
    if not _existing(folder, volume, name):
        raise CompartmentProblem(f"conduit new-compartment-id for {name} wrote no {COMPARTMENT_FILE} in volume {volume}")
    return True
