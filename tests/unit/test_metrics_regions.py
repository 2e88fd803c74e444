"""A node's per-country metrics are outside input: a node may name any number of regions, of any text."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from conduit.facts import metrics


region_names = st.one_of(st.from_regex(r"\A[A-Z]{2}\Z"), st.text(max_size=40))


@given(st.lists(st.tuples(region_names, st.integers(0, 10**12), st.integers(0, 1000)), max_size=400))
def test_a_nodes_regions_are_bounded_short_plain_names_the_busiest_kept(rows):
    text = "".join(
        f'conduit_region_bytes_uploaded{{region="{escape(name)}",scope="common"}} {up}\n'
        f'conduit_region_connected_clients{{region="{escape(name)}",scope="common"}} {clients}\n'
        for name, up, clients in rows
    )
    kept = metrics.regions(metrics.parse(text))
    assert len(kept) <= metrics.MAX_REGIONS
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,16}", name) for name in kept)
    plain = {name for name, _, _ in rows if re.fullmatch(r"[A-Za-z0-9_-]{1,16}", name)}
    if len(plain) <= metrics.MAX_REGIONS:
        assert set(kept) == plain


def test_a_node_naming_thousands_of_regions_keeps_the_busiest():
    text = "".join(f'conduit_region_bytes_uploaded{{region="R{i}",scope="common"}} {i}\n' for i in range(5000))
    kept = metrics.regions(metrics.parse(text))
    assert set(kept) == {f"R{i}" for i in range(5000 - metrics.MAX_REGIONS, 5000)}


def escape(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
