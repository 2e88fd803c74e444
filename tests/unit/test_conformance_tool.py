"""The reconciler's side of every upstream rule of tests/conformance.py that has a spec fragment.

For each such row and each image profile it covers, a minimal spec with the row's fragment
is validated against that profile's image facts, as `plan` would after asking the image:
- tool "refuse": validation (load_text) or the image checks (mismatches, image_checks)
  refuse it, in one line naming a field of the fragment;
- tool "accept": it validates, and the rendered container command carries the flags of the
  row's argv (as flag/value pairs, in any order);
- tool "omit": it validates and the rendered command leaves out the flag the image refuses.
The upstream source of each rule is in its row (Rule.source); rows without a spec fragment
are the stand-in's alone (tests/integration/test_standin_conformance.py).
"""

from __future__ import annotations

import pytest
import yaml

from conduit.engine.settle import mismatches
from conduit.errors import SpecError
from conduit.spec.load import load_text
from conduit.render.container import container_props
from conduit.spec.image import PROFILES, static_facts
from conduit.spec.image_checks import image_checks
from conduit.spec.resolve import nodes, with_image_facts
from tests.conformance import RULES, Rule
from tests.helpers import SMALL_VPS, minimal

# conformance profile -> (image tag the profile is published as, conduit.spec.image profile)
IMAGES = {
    "1.1": ("ghcr.io/psiphon-inc/conduit/cli:1.1.0", "official-1.1"),
    "1.2": ("ghcr.io/psiphon-inc/conduit/cli:1.2.0", "official-1.2"),
    "1.3": ("ghcr.io/psiphon-inc/conduit/cli:1.3.0", "official-1.3"),
    "1.4": ("ghcr.io/psiphon-inc/conduit/cli:1.4.0", "official-1.4"),
    "1.5": ("ghcr.io/psiphon-inc/conduit/cli:1.5.0", "official-1.5"),
    "2.0": ("ghcr.io/psiphon-inc/conduit/cli:2.0.0", "official-2.0"),
    "community": ("ghcr.io/ssmirr/conduit/conduit:cc08a09", "community"),
}
# The same flag under each of its names: the short form where there is one.
ALIASES = {
    "--max-clients": "-m", "--max-common-clients": "-m", "--bandwidth": "-b", "--data-dir": "-d",
    "--stats-file": "-s", "--verbose": "-v", "--psiphon-config": "-c",
}  # fmt: skip
NO_VALUE = {"-v", "-s", "--geo"}  # booleans, and --stats-file's optional value (NoOptDefVal)

CASES = [pytest.param(row, profile, id=f"{row.rule}[{profile}]") for row in RULES if row.spec for profile in row.profiles]


def _merge(base: dict, fragment: dict) -> dict:
    out = dict(base)
    for key, value in fragment.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def spec_text(row: Rule, profile: str) -> str:
    image = IMAGES[profile][0]
    base = {
        "containers": {"count": 1, "image": image, "resources": {"cpus": 0.5, "memory": "256MiB"}},
        "conduit": {"max_clients": 40, "bandwidth_mbps": 5},
    }
    return yaml.safe_dump(minimal(**_merge(base, row.spec)), sort_keys=False)


def asked_facts(profile: str):
    """What the image of this profile answers when plan asks it (exact flags, build, monitor)."""
    image, name = IMAGES[profile]
    p = PROFILES[name]
    facts = static_facts(image, "auto", "community" if p.build == "community" else "auto")
    assert facts.flags == p.flags and facts.exact, f"the tag of {image} must pin profile {name}"
    return facts


def verdict(row: Rule, profile: str):
    """(errors, rendered command): the errors load_text or the image checks give, one per line."""
    try:
        doc = load_text(spec_text(row, profile), "c.yaml", SMALL_VPS)
    except SpecError as exc:
        return exc.lines(), None
    found = asked_facts(profile)
    settled = with_image_facts(doc, found)
    errors = mismatches(doc, found) + [f"{'.'.join(map(str, path))}: {message}" for path, message in image_checks(settled, found)]
    return errors, container_props(settled, nodes(settled)[0])["command"]


def fields(fragment: dict, prefix: str = "spec") -> list[str]:
    """spec.conduit.data_cap, spec.conduit.data_cap.period_days, …: every field a fragment sets
    (a section counts: "no conduit-monitor" is about data_cap as a whole)."""
    out = []
    for key, value in fragment.items():
        path = f"{prefix}.{key}"
        if prefix != "spec":
            out.append(path)
        out += fields(value, path) if isinstance(value, dict) else []
    return out


def pairs(argv: list[str]) -> set[tuple[str, str | None]]:
    """(flag, value) pairs of a start command line, every flag under one name."""
    out = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "--":
            i += 1
            continue
        flag, eq, value = arg.partition("=")
        flag = ALIASES.get(flag, flag)
        if not eq and flag not in NO_VALUE and i + 1 < len(argv) and not _is_flag(argv[i + 1]):
            value = argv[i + 1]
            i += 1
        out.add((flag, _value(flag, value or None)))
        i += 1
    return out


def _is_flag(arg: str) -> bool:
    try:
        float(arg)
        return False
    except ValueError:
        return arg.startswith("-")


def _value(flag: str, value: str | None) -> str | None:
    """--metrics-addr 127.0.0.1:0 in a row means "a port on 127.0.0.1": only the host counts."""
    return value.rsplit(":", 1)[0] if flag == "--metrics-addr" and value else value


@pytest.mark.parametrize(("row", "profile"), CASES)
def test_the_reconciler_does_what_the_row_says(row: Rule, profile: str):
    """Refuse, accept with the row's flags, or omit the refused flag; upstream source: the row's `source`."""
    errors, command = verdict(row, profile)
    where = f"{row.rule} on {profile} ({row.source})"
    if row.tool == "refuse":
        assert errors, f"{where}: the reconciler accepts a spec the real CLI refuses: {command}"
        assert any(f"{f}:" in line or f"{f}." in line for line in errors for f in fields(row.spec)), f"{where}: {errors} name none of {fields(row.spec)}"
        assert all("\n" not in line for line in errors)
        return
    assert not errors, f"{where}: refused: {errors}"
    wanted = pairs(row.args())
    if row.tool == "omit":
        assert not {flag for flag, _ in wanted if flag not in ("-d",)} & {flag for flag, _ in pairs(command)}, f"{where}: {command}"
        return
    assert wanted <= pairs(command), f"{where}: {sorted(wanted - pairs(command), key=str)} not in {command}"
