"""A node's Ryve claim code as a PNG (the same link `conduit claim` shows), for a caller that sends
it somewhere rather than printing it: the bot, in a private chat with an operator only."""

from __future__ import annotations

import io

import qrcode
from qrcode.image.pure import PyPNGImage

from conduit.drivers.keys import claim_url, read_key
from conduit.errors import HostileEntry, KeyProblem
from conduit.facts.keyfile import BadKey
from conduit.spec.resolve import node_settings
from conduit.spec.spec import ClusterSpec


class NoClaim(Exception):
    """Why there is no claim code; one line."""


def png_code(text: str) -> bytes:
    code = qrcode.QRCode(border=1)
    code.add_data(text)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image(image_factory=PyPNGImage).save(out)
    return out.getvalue()


def claim_png(doc: ClusterSpec, client, index: int) -> tuple[str, bytes]:
    """(node name, the PNG of its claim link)."""
    if not 1 <= index <= (doc.spec.containers.count or 0):
        raise NoClaim(f"there is no node {index}")
    node = node_settings(doc, index)
    try:
        key = read_key(client, node.volume, node.name)
    except (HostileEntry, KeyProblem) as exc:
        raise NoClaim(f"{node.name}: the key cannot be read ({exc})") from None
    if key is None:
        raise NoClaim(f"volume {node.volume} holds no key yet; start the node first")
    try:
        return node.name, png_code(claim_url(key, node.name))
    except BadKey as exc:
        raise NoClaim(f"{node.volume}/conduit_key.json: the key cannot be read ({exc})") from None
