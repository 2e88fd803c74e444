"""What `conduit serve` says as it starts."""

from __future__ import annotations

from conduit.cli.serve import startup_lines


def test_tls_and_an_ipv6_address_make_an_https_url_in_brackets():
    (line,) = startup_lines("::", 8443, True, False, None, True)
    assert line.startswith("conduit agent at https://[::]:8443/ (TLS on): ")


def test_behind_a_proxy_says_so_and_a_state_that_cannot_tell_asks_for_no_token():
    (line,) = startup_lines("0.0.0.0", 8080, False, True, None, None)
    assert line.startswith("conduit agent at http://0.0.0.0:8080/ (TLS off: a TLS proxy on this host fronts it)")
    assert startup_lines("[::1]", 1, False, False, None, False)[1].startswith("no tokens yet")
