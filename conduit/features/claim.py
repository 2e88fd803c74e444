"""A claim link as a PNG QR code (the one `conduit claim --png` writes), for a caller that sends it
somewhere rather than printing it: the bot, in a private chat with an operator only. The link
itself comes from the agent (conduit.serve.agent.Agent.claim), the same for this host and another."""

from __future__ import annotations

import io

import qrcode
from qrcode.image.pure import PyPNGImage


def png_code(text: str) -> bytes:
    code = qrcode.QRCode(border=1)
    code.add_data(text)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image(image_factory=PyPNGImage).save(out)
    return out.getvalue()
