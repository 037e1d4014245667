"""Unit tests for the outbound address guard (a pure function; no network is used)."""

from __future__ import annotations

import pytest

from conveyor.nodes.outbound import address_refused


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("fc00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
        ("fe80::1", "link-local (cloud metadata)"),
        ("fe80::1%eth0", "link-local (cloud metadata)"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_refuses_internal_addresses_with_the_reason(address: str, kind: str) -> None:
    assert address_refused(address) == kind


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "240.0.0.1", "255.255.255.255"])
def test_refuses_unspecified_and_reserved_addresses(address: str) -> None:
    assert address_refused(address) is not None


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "172.32.0.1", "100.128.0.1"],
)
def test_allows_public_addresses(address: str) -> None:
    assert address_refused(address) is None


def test_rejects_text_that_is_not_an_ip_address() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        address_refused("localhost")
