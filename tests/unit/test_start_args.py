"""Values of start flags passed through extra_args, as the 2.0 CLI and the community build check them."""

import pytest

from conduit.facts.compartment import pairing_token
from conduit.spec.start_args import compartment_input_problem, flag_values, set_problem

ID = "A" * 42 + "E"


def test_a_share_token_is_taken_like_an_id():
    # 2.0 cli/internal/config/compartment.go NormalizePersonalCompartmentInput: an ID or a v1 token
    assert compartment_input_problem(ID) is None
    assert compartment_input_problem(pairing_token(ID, "node")) is None
    assert compartment_input_problem(" " + ID + " ") is None
    assert "invalid compartment id or token" in compartment_input_problem("abc")
    assert "invalid compartment id or token" in compartment_input_problem(ID + "=")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("InproxyReducedMaxCommonClients=5", None),
        ("InproxyReducedMaxCommonClients=many", "invalid --set value for InproxyReducedMaxCommonClients: expected integer"),
        ("EmitDiagnosticNotices=yes", "invalid --set value for EmitDiagnosticNotices: expected true or false"),
        ("InproxyReducedStartTime=22", "invalid --set value for InproxyReducedStartTime: expected string"),
        (f"InproxyProxyPersonalCompartmentID={ID}", None),
        ("InproxyProxyPersonalCompartmentID=abc", "invalid compartment id or token: neither a compartment ID nor a share token"),
        ("Foo=1", 'unsupported --set key "Foo"'),
        ("Foo", 'invalid --set entry "Foo": expected key=value'),
    ],
)
def test_set_overrides_are_typed_and_allowlisted(entry, problem):
    # 2.0 cli/internal/config/set_overrides.go:19-33 ParseSetOverrides
    assert set_problem(entry) == problem


def test_flag_values_read_both_spellings():
    assert flag_values(["--set=A=1", "--set", "B=2", "--geo", "--idle-restart"]) == [
        (0, "set", "A=1"), (1, "set", "B=2"), (3, "geo", None), (4, "idle-restart", None),
    ]  # fmt: skip
