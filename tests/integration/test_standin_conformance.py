"""Every upstream rule of tests/conformance.py, run against the stand-in image of each profile it covers.

One image per profile, built once; the rows of a profile run in parallel as
`docker run --rm` against the private engine. Each case id names the rule and the
profile; the failure message cites the upstream source.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conformance import ACCEPTED, PROFILES, RULES, VERSION_OUTPUT, Rule, rows_for

# One worker runs them all: `results` (every row on every profile) is made once per worker that needs it.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("standin-conformance")]


def run_row(host: str, image: str, row: Rule, profile: str) -> tuple[int, str, str]:
    env = dict(os.environ, DOCKER_HOST=host)
    argv = ["docker", "run", "--rm", "-i", "--entrypoint", row.entrypoint(), "-e", "STANDIN_EXIT_AFTER=1"]
    argv += [image, *row.args()]
    try:
        res = subprocess.run(argv, input=row.stdin or "", capture_output=True, text=True, env=env, timeout=40)
    except subprocess.TimeoutExpired as exc:
        return -1, str(exc.stdout or ""), f"timed out: {exc}"
    return res.returncode, res.stdout, res.stderr


def check(row: Rule, profile: str, code: int, out: str, err: str) -> list[str]:
    problems = []
    if code != row.exit:
        problems.append(f"exit code {code}, upstream {row.exit}")
    if row.stderr and row.stderr not in err:
        problems.append(f"stderr lacks {row.stderr!r}")
    want_out = VERSION_OUTPUT[profile] + "\n" if row.rule == "version" else row.stdout
    if want_out and want_out not in out:
        problems.append(f"stdout lacks {want_out!r}")
    if row.absent and (row.absent in out or row.absent in err):
        problems.append(f"{row.absent!r} should not appear")
    return problems


@pytest.fixture(scope="module")
def results(docker_engine, standin_image_factory):
    """{(rule, profile): (code, stdout, stderr)} for every row and profile."""
    out: dict[tuple[str, str], tuple[int, str, str]] = {}
    for profile, (version, build) in PROFILES.items():
        image = standin_image_factory(version, build)
        rows = rows_for(profile)
        with ThreadPoolExecutor(max_workers=6) as pool:
            done = pool.map(lambda r: run_row(docker_engine.host, image, r, profile), rows)
            for row, res in zip(rows, done):
                out[(row.rule, profile)] = res
    return out


CASES = [(r, p) for r in RULES for p in r.profiles]


@pytest.mark.parametrize("row, profile", CASES, ids=[f"{r.rule}[{p}]" for r, p in CASES])
def test_rule(results, row: Rule, profile: str):
    code, out, err = results[(row.rule, profile)]
    problems = check(row, profile, code, out, err)
    assert not problems, (
        f"{row.rule} on {profile} (upstream: {row.source}): {'; '.join(problems)}\n"
        f"argv: {' '.join(row.argv)}\n--- stdout\n{out[-1500:]}\n--- stderr\n{err[-1500:]}")


def test_table_is_well_formed():
    names = [r.rule for r in RULES]
    assert len(names) == len(set(names)), "rule ids are unique"
    for r in RULES:
        assert r.tool in ("refuse", "accept", "omit"), r.rule
        assert set(r.profiles) <= set(PROFILES), r.rule
        assert r.source, r.rule
        assert r.argv[0] in ("conduit", "conduit-monitor"), r.rule
        if r.exit == ACCEPTED:
            assert r.argv[1] == "start", r.rule
