"""What every conduit command that reads a spec pays before it asks Docker anything: Python
starts, loads its command-line parser (click) and YAML, and validates the spec into its Pydantic
models. No Docker, no state, no output. bench/vs_compose.py times it beside `conduit plan`.

    python3 bench/spec_floor.py SPEC
"""

import sys

import click  # noqa: F401  (the CLI's parser: every command loads it)

from conduit.drivers import hostfacts
from conduit.spec.load import load_file

load_file(sys.argv[1], hostfacts.detect("/"))
