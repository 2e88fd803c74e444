"""What a new operator meets first: the README's commands, CI running the same, Python 3.10."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]


def readme_blocks() -> list[str]:
    text = (TOP / "README.md").read_text()
    return [b.strip() for b in re.findall(r"```(?:sh|bash|console|shell)?\n(.*?)```", text, re.S) if b.strip()]


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    install, tests = readme_blocks()[:2]
    ci = (TOP / ".ci/run").read_text()
    assert install.splitlines()[0] in ci.splitlines()
    assert tests.splitlines()[-1] in ci.splitlines()
    assert "export CI=true" in ci and ".ci/fresh-root" in ci


def test_the_code_runs_on_python_3_10():
    """Static: no syntax, module or function newer than 3.10 (vermin is a test extra)."""
    try:
        import vermin  # noqa: F401
    except ImportError:
        pytest.fail("vermin is not installed: ./install.sh --test", pytrace=False)
    done = subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())",
         "--target=3.10-", "--no-tips", "--violations", "conduit", "tests", "bench"],
        cwd=TOP, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'requires-python = ">=3.10"' in (TOP / "pyproject.toml").read_text()
