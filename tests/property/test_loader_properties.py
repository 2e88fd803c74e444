"""The loader only ever returns a spec or raises its own error."""

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.errors import SpecError
from conduit.spec.load import load_text
from conduit.spec.spec import ClusterSpec
from tests.helpers import SMALL_VPS
from tests.strategies import mutated_examples, valid_specs

LINE = r"^c\.yaml:\d+:\d+: "


def load_or_error(text: str):
    try:
        return load_text(text, "c.yaml", SMALL_VPS)
    except SpecError as exc:
        assert exc.problems, "an error with no problem in it"
        for line in exc.lines():
            assert line.startswith("c.yaml:") and "\n" not in line
            assert "Traceback" not in line
        return exc


@given(st.text(max_size=400))
@settings(max_examples=300)
def test_random_text(text):
    result = load_or_error(text)
    assert isinstance(result, (ClusterSpec, SpecError))


@given(st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_random_bytes_as_text(text):
    assert isinstance(load_or_error(text), (ClusterSpec, SpecError))


@given(mutated_examples())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_examples(data):
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    assert isinstance(load_or_error(text), (ClusterSpec, SpecError))


@given(valid_specs())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_valid_specs_load(data):
    big_host = SMALL_VPS.__class__(vcpus=4, memory=8 << 30, nic_mbps=1000, nofile_limit=20000)
    spec = load_text(yaml.safe_dump(data, sort_keys=False), "c.yaml", big_host)
    assert spec.metadata.name == data["metadata"]["name"]
