"""Moving in and out without losing a node key: import-v1, keys, claim, destroy."""

from __future__ import annotations

import io
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import qrcode

from conduit.cli.common import confirm, fail, load_spec
from conduit.cli.apply import Asking, reconciled
from conduit.errors import DockerError, HostileEntry, KeyProblem, PolicyError, SpecError
from conduit.drivers.files import private_tree
from conduit.drivers.keys import backup, claim_url, read_file, read_key, restore
from conduit.drivers.programs import not_installed
from conduit.engine.images import asked_facts
from conduit.engine.intent import Destroy
from conduit.engine.reconcile import Request
from conduit.facts.compartment import COMPARTMENT_FILE, pairing_token, parse_compartment, token_name
from conduit.facts.keyfile import BadKey
from conduit.facts.v1settings import Settings, SettingsError, parse_settings
from conduit.features.alerts import compromised
from conduit.features.claim import png_code
from conduit.features.v1import import ImportRefused, build_spec, existing_nodes, render, telegram_secrets, write_secrets
from conduit.spec.load import load_text
from conduit.spec.policy import load_policy
from conduit.spec.resolve import node_settings, nodes


def _client(opts):
    try:
        client = opts.host().docker()
    except DockerError as exc:
        fail(str(exc))
    if client is None:
        fail(f"no Docker daemon on this machine: {not_installed('dockerd')}")
    return client


def _running_image_facts(client, found: list[dict], state_dir: Path):
    """Ask the image the nodes run, by its ID (the tag may point elsewhere by now)."""
    node = next((n for n in found if n.get("image_id")), None)
    if node is None:
        return None
    facts, unkept = asked_facts(client, node["image_id"], state_dir)
    if unkept:
        click.echo(f"warning: {unkept}", err=True)
    return replace(facts, image=node["image"]) if facts is not None else None


@click.command("import-v1")
@click.option("--settings", "settings_path", default="/opt/conduit/settings.conf", show_default=True, type=click.Path(dir_okay=False))
@click.option("--prefix", default="conduit", show_default=True, help="Name of the first container (the rest are PREFIX-2, PREFIX-3 …).")
@click.option("--name", "cluster", default=None, help="Cluster name for the spec (default: the prefix).")
@click.option("--metrics-port-base", type=int, default=9090, show_default=True)
@click.option("-o", "--output", default="cluster.yaml", show_default=True, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite the output file and the cluster's secret files.")
@click.pass_obj
def import_v1_command(opts, settings_path, prefix, cluster, metrics_port_base, output, force) -> None:
    """Write a spec that adopts a bash-manager install: same containers, same volumes, same keys.

    The Telegram token and chat id go into 0600 files in the first directory the host policy
    allows secret files in; the spec is checked against that policy before anything is written.
    """
    if Path(output).exists() and not force:
        fail(f"{output} exists; use --force to overwrite it")
    settings = _v1_settings(settings_path)
    cluster = cluster or prefix
    try:
        policy = load_policy()
    except PolicyError as exc:
        fail(str(exc))
    secrets_dir = Path(policy[0].secrets.file_dirs[0]) if policy[0].secrets.file_dirs else None
    client = _client(opts)
    try:
        found = existing_nodes(client, prefix)
        facts = _running_image_facts(client, found, opts.state_dir)
        spec, warnings = build_spec(settings, found, prefix, cluster, secrets_dir, metrics_port_base, facts)
    except (ImportRefused, DockerError) as exc:
        fail(str(exc))
    rendered = render(spec, settings_path)
    try:
        load_text(rendered, output, opts.detected(), policy)
    except SpecError as exc:
        lines = exc.lines()
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        fail(f"the adopted spec would be refused: {lines[0]}{more}; nothing was written")
    try:
        write_secrets(telegram_secrets(settings, cluster, secrets_dir), replace=force)
    except ImportRefused as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{secrets_dir}: cannot write the Telegram secret files: {exc.strerror}; nothing else was written")
    Path(output).write_text(rendered)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"wrote {output}: {len(found)} existing container(s) adopted on their volumes; review it with conduit plan {output}")


def _v1_settings(settings_path: str) -> Settings:
    """The bash manager's settings file; without one there is no install to adopt."""
    try:
        return parse_settings(Path(settings_path).read_text(), settings_path)
    except FileNotFoundError:
        fail(f"{settings_path} not found: there is no bash-manager install to import (name its settings file with "
             "--settings); to start a new cluster on this host, run conduit init")  # fmt: skip
    except OSError as exc:
        fail(f"{settings_path}: cannot read: {exc.strerror}", 2)
    except SettingsError as exc:
        fail(str(exc), 2)


@click.group("keys")
def keys_group() -> None:
    """Back up and restore the nodes' identity keys (conduit_key.json in each data volume)."""


@keys_group.command("backup")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("dest", required=False, type=click.Path(file_okay=False))
@click.pass_obj
def keys_backup(opts, file, dest) -> None:
    """Copy every node's key out of its volume into DEST (default: the state dir), with checksums."""
    spec = load_spec(opts, file)
    target = Path(dest) if dest else private_tree(opts.state_dir) / "key-backups" / time.strftime("%Y%m%dT%H%M%SZ-manual", time.gmtime())
    owners = {n.volume: n.name for n in nodes(spec)}
    try:
        sums = backup(_client(opts), list(owners), target, owners)
    except HostileEntry as exc:
        _refuse(spec, exc, f"; the other keys were backed up to {target}")
    except KeyProblem as exc:
        fail(str(exc))
    click.echo(f"backed up {len(sums)} key(s) to {target}")


@keys_group.command("restore")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("src", type=click.Path(file_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Replace a different key that a volume already holds.")
@click.pass_obj
def keys_restore(opts, file, src, force) -> None:
    """Put the keys of a backup back into their volumes (with their personal compartments).

    Refuses a file the node would not keep (it would make a new key) and a different key
    already in a volume (without --force); nothing is written unless every file passes.
    """
    spec = load_spec(opts, file)
    try:
        done = restore(_client(opts), Path(src), spec.metadata.name, force=force, nodes={n.volume: n.name for n in nodes(spec)})
    except HostileEntry as exc:
        _refuse(spec, exc, "; nothing was restored into that volume")
    except KeyProblem as exc:
        fail(str(exc))
    click.echo(f"restored {len(done)} key(s): {', '.join(done)}")


def _refuse(spec, exc: HostileEntry, more: str = "") -> None:
    """A node planted a link or a special file where the tool reads or writes: alert, then one line and exit 1."""
    compromised(spec, exc)
    fail(f"{exc}{more}")


def _show_code(text: str, png: str | None) -> None:
    """A QR code on the terminal (and in a 0600 PNG when asked), then the text itself."""
    code = qrcode.QRCode(border=1)
    code.add_data(text)
    code.make(fit=True)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    click.echo(out.getvalue())
    click.echo(text)
    if png:
        fd = os.open(png, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(png_code(text))
        click.echo(f"wrote {png}")


def _personal_token(spec, client, node, name: str | None) -> str:
    try:
        data = read_file(client, node.volume, COMPARTMENT_FILE, node.name)
    except HostileEntry as exc:
        _refuse(spec, exc)
    except KeyProblem as exc:
        fail(str(exc))
    if data is None:
        fail(f"volume {node.volume} holds no {COMPARTMENT_FILE}: the node takes no personal clients; "
             "set spec.conduit.max_personal_clients above 0 (2.0 images) and apply, which makes it")
    try:
        return pairing_token(parse_compartment(data), name or token_name(node.name))
    except BadKey as exc:
        fail(f"{node.volume}/{COMPARTMENT_FILE}: {exc}")
    raise AssertionError("unreachable")


@click.command("claim")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("index", required=False, type=int, default=1)
@click.option("--png", type=click.Path(dir_okay=False), help="Also write the QR code to this PNG file (mode 0600).")
@click.option("--yes", is_flag=True, help="Do not ask; the code reveals the node's private key.")
@click.option("--personal", is_flag=True, help="The personal pairing token (Conduit 2.0 personal clients) instead of the Ryve claim.")
@click.option("--name", default=None, help="The name the code carries (default: the container's name).")
@click.pass_obj
def claim_command(opts, file, index, png, yes, personal, name) -> None:
    """The Ryve claim QR code of node INDEX (default 1). It reveals the node's private key.

    With --personal: the share token of the node's personal compartment, as
    `conduit new-compartment-id` prints it (upstream has no pairing link, only this token).
    """
    spec = load_spec(opts, file)
    if not 1 <= index <= (spec.spec.containers.count or 0):
        fail(f"there is no node {index} (count is {spec.spec.containers.count})", 2)
    node = node_settings(spec, index)
    client = _client(opts)
    if personal:
        token = _personal_token(spec, client, node, name)
        click.echo(f"Personal pairing token of {node.name} (share it only with the people whose clients you pair):")
        _show_code(token, png)
        return
    try:
        key = read_key(client, node.volume, node.name)
    except HostileEntry as exc:
        _refuse(spec, exc)
    except KeyProblem as exc:
        fail(str(exc))
    if key is None:
        fail(f"volume {node.volume} holds no key yet; start the node first")
    if not yes:
        if not sys.stdin.isatty():
            fail("the claim code reveals the private key: confirm on a terminal or pass --yes")
        if not click.confirm(f"Show the claim code of {node.name}? It reveals the node's private key", default=False):
            fail("cancelled")
    try:
        url = claim_url(key, name if name is not None else node.name)
    except BadKey as exc:
        fail(f"{node.volume}/conduit_key.json: the key cannot be read ({exc})")
    _show_code(url, png)


@click.command("destroy")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--purge-data", is_flag=True, help="Also remove the data volumes, and with them the node keys.")
@click.option("--auto-approve", is_flag=True, help="Do not ask (with --purge-data you must still type the cluster name).")
@click.option("--confirm-name", default=None, help="The cluster name, to purge data without a terminal.")
@click.pass_obj
def destroy_command(opts, file, purge_data, auto_approve, confirm_name) -> None:
    """Remove everything the tool manages for FILE's cluster. Volumes and keys stay unless --purge-data."""
    spec = load_spec(opts, file)
    if purge_data:
        _confirm_purge(spec.metadata.name, confirm_name)

    # The key backup the removal makes is the last copy of the keys: it stays in the state directory.
    request = Request(spec, f"# destroy of {spec.metadata.name}\n", file, opts.host(), opts.detected(), "conduit destroy", click.echo,
                      intent=Destroy(purge_data), wait=False, git=(None, None), spec_hash="destroy")  # fmt: skip
    outcome = reconciled(request, Asking(opts, auto_approve or purge_data, question="Destroy these?"))
    if outcome.status == "failed" and outcome.rollback_failed:
        fail(f"destroy stopped part way: {outcome.failure}; `conduit status` shows what is left; run destroy again to finish",
             outcome.exit_code)
    if outcome.status == "failed":
        fail(f"destroy stopped before any change: {outcome.failure}")
    if outcome.status == "succeeded":
        click.echo("Destroyed." + ("" if purge_data else " Data volumes and node keys were kept."))


def _confirm_purge(cluster: str, confirm_name: str | None) -> None:
    """--purge-data deletes every node key: the cluster's name must be typed (or given)."""
    given = confirm_name
    if given is None:
        if not sys.stdin.isatty():
            fail("--purge-data deletes every node key: pass --confirm-name NAME or run on a terminal")
        given = click.prompt(f"Type the cluster name ({cluster}) to delete its volumes and keys")
    if given != cluster:
        fail("the name does not match; nothing was changed")
