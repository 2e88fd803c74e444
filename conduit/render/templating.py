"""One Jinja2 environment for every template: strict about undefined names, no autoescape."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2


@cache
def environment() -> jinja2.Environment:
    import jinja2  # on first render: a plan of a cluster without front, sysctl file or tracker unit renders no template

    return jinja2.Environment(
        loader=jinja2.PackageLoader("conduit.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
