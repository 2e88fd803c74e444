"""conduit's structured events: structlog loads without rich or colorama, tracebacks are plain, rich still imports."""

from __future__ import annotations

import subprocess
import sys

from helpers import cli_env

CODE = """
import sys
from conduit.views import logs
print("rich" in sys.modules, "colorama" in sys.modules)
logs.configure("console", "debug")
try:
    {}["missing"]
except KeyError:
    logs.get().error("apply.error", exc_info=True)
import rich.text
print(rich.text.Text.from_markup("[bold]plain[/bold]").plain)
"""


def test_structlog_loads_without_rich_or_colorama_and_renders_plain_tracebacks():
    done = subprocess.run([sys.executable, "-c", CODE], env=cli_env(), capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "plain"]  # rich and colorama were hidden while structlog loaded, and only then
    assert "[error    ] apply.error" in done.stderr
    assert "Traceback (most recent call last):" in done.stderr and "KeyError: 'missing'" in done.stderr
    assert "│" not in done.stderr  # no rich traceback box
