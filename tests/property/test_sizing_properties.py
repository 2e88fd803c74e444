"""Sizes as the spec takes them, and the even share of a host between its nodes."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit.errors import SpecError
from conduit.spec.advisor import capacity
from conduit.spec.load import load_text
from conduit.spec.policy import HostPolicy
from conduit.spec.profiles import MIB, MIN_NODE_CPUS, MIN_NODE_MEMORY, even_share, millicpus
from conduit.spec.resolve import nodes
from conduit.spec.units import MAX_BYTES, NEEDS_UNIT, format_size, human_size, parse_docker_size, parse_size
from tests.helpers import SMALL_VPS, dump, minimal

FACTORS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
POLICY = (HostPolicy(), "host.yaml")


@st.composite
def spelled_sizes(draw):
    """A number and one of the unit spellings Docker and people use: 384m, 384MiB, 1.5 GB, 512b."""
    whole = draw(st.integers(0, 4096))
    fraction = draw(st.sampled_from(["", ".5", ".25", ".0"]))
    letter = draw(st.sampled_from(["k", "m", "g", "t", ""]))
    suffix = draw(st.sampled_from(["", "b", "ib"])) if letter else "b"
    unit = "".join(c.upper() if draw(st.booleans()) else c for c in letter + suffix)
    space = draw(st.sampled_from(["", " "]))
    return f"{whole}{fraction}{space}{unit}", float(f"{whole}{fraction}") * FACTORS.get(letter, 1)


@given(spelled_sizes())
def test_a_spelled_size_is_its_number_times_its_binary_unit(case):
    text, expected = case
    if expected > MAX_BYTES:
        with pytest.raises(ValueError):
            parse_size(text)
    else:
        assert parse_size(text) == int(expected)


@given(st.one_of(st.integers(0, MAX_BYTES), st.floats(0, 1e12), st.integers(0, 10**9).map(str),
                 st.from_regex(r"\A\s*\d{1,9}\.\d{1,3}\s*\Z")))  # fmt: skip
def test_a_bare_number_is_refused_with_what_to_write(value):
    with pytest.raises(ValueError, match=re.escape(NEEDS_UNIT)):
        parse_size(value)


@given(st.integers(0, 10**12))
def test_docker_reads_a_bare_number_as_bytes(n):
    assert parse_docker_size(str(n)) == n


@given(st.text(max_size=50))
def test_any_text_is_a_size_or_a_value_error(text):
    try:
        assert 0 <= parse_size(text) <= MAX_BYTES
    except ValueError:
        pass


@given(st.integers(0, MAX_BYTES))
def test_written_sizes_read_back(n):
    assert parse_size(format_size(n)) == n
    down, up = parse_size(human_size(n)), parse_size(human_size(n, up=True))
    assert down <= n <= up
    assert n - down <= n / 100 + 1 and up - n <= n / 100 + 1  # three significant digits


@given(room_milli=st.integers(-1000, 4096 * 1000), room_memory=st.integers(-(1 << 30), 1 << 42), count=st.integers(1, 200))
def test_even_shares_never_add_up_to_more_than_the_room(room_milli, room_memory, count):
    cpus, memory = even_share(room_milli / 1000, room_memory, count)
    assert count * millicpus(cpus) <= room_milli
    assert count * memory <= room_memory and memory % MIB == 0
    # nothing is left that would give every node one more thousandth of a CPU or one more MiB
    assert room_milli - count * millicpus(cpus) < count and room_memory - count * memory < count * MIB


@given(
    vcpus=st.integers(1, 6400).map(lambda n: n / 100),
    memory_mib=st.integers(128, 64 << 10),
    count=st.integers(1, 200),
)
@settings(max_examples=150, deadline=None)
def test_every_node_gets_the_least_it_runs_with_or_the_spec_is_refused(vcpus, memory_mib, count):
    host = {"vcpus": vcpus, "memory": f"{memory_mib}MiB"}
    text = dump(minimal(host=host, containers={"count": count}))
    try:
        doc = load_text(text, "c.yaml", SMALL_VPS, POLICY)
    except SpecError as exc:
        lines = exc.lines()
        assert lines and all(re.fullmatch(r"c\.yaml:\d+:\d+: spec\.(containers\.count|host\.reserve_(cpus|memory)): [^\n]+; [^\n]+", line)
                             for line in lines), lines  # fmt: skip
        fit = [int(m.group(1)) for line in lines if (m := re.search(r"lower count to (\d+)$", line))]
        if fit and len(fit) == len(lines):  # what the messages say to write is valid
            again = dump(minimal(host=host, containers={"count": min(fit)}))
            assert nodes(load_text(again, "c.yaml", SMALL_VPS, POLICY))
        return
    settings_ = nodes(doc)
    assert len(settings_) == count
    assert all(n.cpus >= MIN_NODE_CPUS and n.memory >= MIN_NODE_MEMORY for n in settings_)
    assert sum(millicpus(n.cpus) for n in settings_) <= millicpus(vcpus) - millicpus(0.2)
    assert sum(n.memory for n in settings_) <= (memory_mib - 512) * MIB
    assert len(capacity(doc).summary) == 2
