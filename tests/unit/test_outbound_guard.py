"""The outbound guard's decisions (pure functions: no resolution, no connection): which
addresses are internal in every spelling, which hosts are refused before resolving, and how
the allowlist and ``allow_private`` combine."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import InputError
from conveyor.nodes.addresses import address_refused, check_address, host_refused, parse_allowlist
from conveyor.nodes.base import NetworkPolicy
from conveyor.nodes.builtin import build_registry
from conveyor.settings import Settings


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "unique-local (private)"),
        ("fc00::1", "unique-local (private)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("2001::1", "reserved"),
        ("64:ff9b:1::a00:1", "reserved"),
    ],
)
def test_internal_addresses_are_refused_with_the_reason(address: str, kind: str) -> None:
    assert address_refused(address) == kind


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("::ffff:127.0.0.1", "loopback (IPv4 127.0.0.1 embedded)"),  # IPv4-mapped
        ("::127.0.0.1", "loopback (IPv4 127.0.0.1 embedded)"),  # IPv4-compatible
        ("64:ff9b::7f00:1", "loopback (IPv4 127.0.0.1 embedded)"),  # NAT64
        ("2002:7f00:1::", "loopback (IPv4 127.0.0.1 embedded)"),  # 6to4
        ("::ffff:10.0.0.1", "private (IPv4 10.0.0.1 embedded)"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata (IPv4 169.254.169.254 embedded)"),
        ("::ffff:169.254.169.254", "cloud metadata (IPv4 169.254.169.254 embedded)"),
        ("2002:c0a8:101::1", "private (IPv4 192.168.1.1 embedded)"),
        ("::ffff:100.64.0.1", "shared (CGNAT) (IPv4 100.64.0.1 embedded)"),
    ],
)
def test_ipv4_inside_ipv6_is_judged_as_the_ipv4_address(address: str, kind: str) -> None:
    assert address_refused(address) == kind


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert address_refused(address) is None


def test_text_that_is_not_an_ip_address_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        address_refused("localhost")


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # decimal
        "0x7f000001",  # one hex number
        "0x7f.0.0.1",  # a hex part
        "0177.0.0.1",  # an octal part
        "017700000001",  # one octal number
        "127.1",  # fewer than four parts
        "127.0.1",
        "127.000.000.001",  # zero-padded parts
        "0",
        "127.0.0.1.",  # a trailing dot, on any spelling
        "2130706433.",
        "0x7f.0.0.1..",
        "169.254.169.254.",
    ],
)
def test_non_standard_ipv4_spellings_are_refused_before_resolving(host: str) -> None:
    assert (
        host_refused(host) == "an IPv4 address in a non-standard (decimal, octal or hex) spelling"
    )


@pytest.mark.parametrize(
    "host", ["metadata.google.internal", "METADATA.Google.Internal.", "metadata.goog"]
)
def test_metadata_names_are_refused_before_resolving(host: str) -> None:
    assert host_refused(host) == "cloud metadata"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "8.8.8.8", "[::1]", "example.com", "1.2.3.4.5", "x1.example", "0x.io"]
)
def test_names_and_standard_addresses_are_left_to_resolution(host: str) -> None:
    assert host_refused(host) is None


def _verdict(host: str, address: str, **policy: object) -> str | None:
    return check_address(host, address, NetworkPolicy(**policy))  # type: ignore[arg-type]


def test_without_an_allowlist_only_internal_addresses_are_refused() -> None:
    assert _verdict("example.com", "93.184.215.14") is None
    refused = _verdict("example.com", "10.1.2.3")
    assert refused == (
        "refusing to connect to example.com (10.1.2.3): private address; add its network to "
        "CONVEYOR_OUTBOUND_ALLOWLIST or set CONVEYOR_ALLOW_PRIVATE_NETWORK=true to allow it"
    )
    assert _verdict("example.com", "10.1.2.3", allow_private=True) is None


def test_metadata_addresses_are_refused_whatever_the_policy() -> None:
    for policy in (
        {"allow_private": True},
        {"allowlist": ("169.254.0.0/16", "*.internal")},
        {"allow_private": True, "allowlist": ("0.0.0.0/0",)},
    ):
        refused = _verdict("metadata.internal", "169.254.169.254", **policy)
        assert refused is not None
        assert refused.endswith("cloud metadata address")


def test_an_allowlist_admits_matching_names_and_nothing_else() -> None:
    allowlist = ("api.example.com", "*.partner.io")
    assert _verdict("api.example.com", "93.184.215.14", allowlist=allowlist) is None
    assert _verdict("API.Example.com.", "93.184.215.14", allowlist=allowlist) is None
    assert _verdict("eu.partner.io", "93.184.215.14", allowlist=allowlist) is None
    assert _verdict("a.b.partner.io", "93.184.215.14", allowlist=allowlist) is None
    for host in ("partner.io", "example.com", "www.api.example.com", "evilpartner.io"):
        refused = _verdict(host, "93.184.215.14", allowlist=allowlist)
        assert refused == (
            f"refusing to connect to {host} (93.184.215.14): not in the outbound allowlist "
            "(CONVEYOR_OUTBOUND_ALLOWLIST)"
        )
    # allow_private widens which addresses, never which hosts.
    assert _verdict("other.com", "93.184.215.14", allowlist=allowlist, allow_private=True)


def test_a_listed_name_still_may_not_resolve_to_an_internal_address() -> None:
    refused = _verdict("api.example.com", "127.0.0.1", allowlist=("api.example.com",))
    assert refused is not None
    assert "loopback address" in refused
    assert (
        _verdict("api.example.com", "127.0.0.1", allowlist=("api.example.com",), allow_private=True)
        is None
    )


def test_a_listed_private_network_is_allowed_without_allow_private() -> None:
    allowlist = ("10.20.0.0/16", "fd12::/16", "192.168.1.7")
    assert _verdict("billing.corp", "10.20.3.4", allowlist=allowlist) is None
    assert _verdict("billing.corp", "fd12::5", allowlist=allowlist) is None
    assert _verdict("10.20.3.4", "10.20.3.4", allowlist=allowlist) is None
    assert _verdict("printer", "192.168.1.7", allowlist=allowlist) is None
    assert _verdict("billing.corp", "10.21.0.1", allowlist=allowlist) is not None
    assert _verdict("printer", "192.168.1.8", allowlist=allowlist) is not None


@pytest.mark.parametrize(
    "entry", ["http://example.com", "*.", "exa mple.com", "10.0.0.0/33", "2130706433", "a..b"]
)
def test_malformed_allowlist_entries_are_refused_by_name(entry: str) -> None:
    with pytest.raises(InputError, match="outbound allowlist entry"):
        parse_allowlist((entry,))
    with pytest.raises(InputError, match="outbound allowlist entry"):
        build_registry(outbound_allowlist=["example.com", entry], entry_points=False)


def test_the_allowlist_setting_is_a_comma_list_that_reaches_every_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_OUTBOUND_ALLOWLIST", " api.example.com, *.corp.io ,10.0.0.0/8,")
    settings = Settings()
    assert settings.outbound_allowlist == ("api.example.com", "*.corp.io", "10.0.0.0/8")
    registry = build_registry(outbound_allowlist=settings.outbound_allowlist, entry_points=False)
    assert registry.network == NetworkPolicy(
        allowlist=("api.example.com", "*.corp.io", "10.0.0.0/8")
    )
    monkeypatch.delenv("CONVEYOR_OUTBOUND_ALLOWLIST")
    assert Settings().outbound_allowlist == ()


def test_a_malformed_allowlist_setting_stops_the_command_line_naming_the_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conveyor.cli.base import registry_for

    monkeypatch.setenv("CONVEYOR_OUTBOUND_ALLOWLIST", "api.example.com,https://bad.example")
    with pytest.raises(InputError, match=r"entry 'https://bad\.example' is neither"):
        registry_for([], False)
    monkeypatch.setenv("CONVEYOR_OUTBOUND_ALLOWLIST", "api.example.com,10.0.0.0/8")
    assert registry_for([], True).network == NetworkPolicy(
        allow_private=True, allowlist=("api.example.com", "10.0.0.0/8")
    )


# Calls that open a network connection. A node module using one must take its address from
# the guard (outbound.resolve), use the guarded HTTP client (outbound.make_client), or say
# that its caller does (naming outbound.resolve).
CONNECTING = (
    "httpx.AsyncClient(",
    "httpx.Client(",
    "urllib.request",
    "socket.create_connection",
    "asyncio.open_connection",
    "smtplib.SMTP",
    "aiosmtplib.",
    "psycopg.connect",
    "AsyncConnection.connect",
    "create_engine(",
    "create_async_engine(",
    "aiomysql.",
    "redis.",
)


def test_node_modules_that_connect_go_through_the_guard() -> None:
    nodes = Path(__file__).resolve().parents[2] / "src" / "conveyor" / "nodes"
    unguarded = []
    for module in sorted(nodes.rglob("*.py")):
        text = module.read_text()
        if module.name == "outbound.py" or not any(call in text for call in CONNECTING):
            continue
        if not any(word in text for word in ("resolve(", "make_client(", "outbound.resolve")):
            unguarded.append(module.name)
    assert unguarded == [], "these connect without conveyor.nodes.outbound"
