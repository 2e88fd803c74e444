from conduit.spec.load import load_text
from conduit.render.sysctl import render_sysctl
from tests.helpers import EXAMPLE, SMALL_VPS


def values(resources):
    return {r.id: r.props["value"] for r in resources if r.kind == "sysctl"}


def test_profile_floors_never_lower_what_the_host_has():
    doc = load_text(EXAMPLE.read_text(), "c.yaml", SMALL_VPS)
    now = {"fs.file-max": "2466170", "net.core.somaxconn": "4096", "net.ipv4.tcp_fin_timeout": "60"}
    resources = render_sysctl(doc, now)
    got = values(resources)
    assert got["fs.file-max"] == "2466170"  # already above the floor: kept
    assert got["net.core.somaxconn"] == "8192"  # below: raised
    assert got["net.ipv4.tcp_fin_timeout"] == "15"  # not a floor: exact
    (file,) = [r for r in resources if r.kind == "sysctl_file"]
    assert "fs.file-max = 2466170" in file.props["content"]  # and kept across reboots


def test_a_value_set_in_the_spec_is_exact():
    doc = load_text(EXAMPLE.read_text(), "c.yaml", SMALL_VPS)
    assert values(render_sysctl(doc, {"net.core.rmem_max": "67108864"}))["net.core.rmem_max"] == "33554432"
