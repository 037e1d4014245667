"""Which hosts and addresses a step may connect to: pure decisions over host names, IP
addresses and a :class:`~conveyor.nodes.base.NetworkPolicy` (no I/O; the connecting is in
:mod:`conveyor.nodes.outbound`). docs/security.md states these rules for users."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

from conveyor.errors import InputError
from conveyor.nodes.base import NetworkPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = "cloud metadata"
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog"})
# AWS, GCP and Azure (169.254.169.254), AWS ECS tasks, AWS over IPv6, Alibaba Cloud.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)

_IPV4_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "reserved"),
    ("203.0.113.0/24", "reserved"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_IPV6_REFUSED: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "reserved"),  # local-use NAT64: the IPv4 part is not recoverable
    ("100::/64", "reserved"),
    ("2001::/32", "reserved"),  # Teredo: the IPv4 part is obfuscated
    ("2001:db8::/32", "reserved"),
    ("fc00::/7", "unique-local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),
    ("ff00::/8", "multicast"),
)
_REFUSED = tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in _IPV4_REFUSED + _IPV6_REFUSED)
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# One label of a numeric host: decimal, octal (leading 0) or hex (0x); inet_aton takes one
# to four of them, so "127.1" and "2130706433" both mean 127.0.0.1 to getaddrinfo.
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def address_refused(address: str) -> str | None:
    """Why an IP address is internal (``loopback``, ``private``, ...), or None when it is a
    public address. Raises ValueError for text that is not an IP address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip in METADATA_ADDRESSES:
        return METADATA
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            kind = address_refused(str(embedded))
            return f"{kind} (IPv4 {embedded} embedded)" if kind else None
    for network, kind in _REFUSED:
        if ip.version == network.version and ip in network:
            return kind
    return None if ip.is_global else "reserved"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: mapped (``::ffff:a.b.c.d``), compatible
    (``::a.b.c.d``), NAT64 (``64:ff9b::a.b.c.d``) or 6to4 (``2002:aabb:ccdd::``)."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    for network in (_MAPPED, _NAT64, _COMPATIBLE):
        if ip in network and int(ip) > 1:  # :: and ::1 are themselves, not 0.0.0.x
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def host_refused(host: str) -> str | None:
    """Why a host is refused before it is resolved, whatever the policy: a cloud metadata
    name, or an IPv4 address spelled other than as four decimal parts (parsers disagree on
    those, and each is a way to write 127.0.0.1 past a filter)."""
    name = host.strip("[]").lower()
    bare = name.rstrip(".")
    if bare in METADATA_NAMES:
        return METADATA
    if bare == name and literal_address(name) is not None:
        return None
    # A trailing dot ("127.0.0.1.", "2130706433.") is one more spelling: some resolvers
    # read it as the address, others refuse it; refused here whatever the resolver does.
    labels = bare.split(".")
    if len(labels) <= 4 and all(_NUMERIC_LABEL.match(label) for label in labels):
        return "an IPv4 address in a non-standard (decimal, octal or hex) spelling"
    return None


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class Allowlist:
    """A parsed ``NetworkPolicy.allowlist``: exact names, ``*.suffix`` names, networks."""

    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[IPNetwork, ...]

    def __bool__(self) -> bool:
        return bool(self.names or self.suffixes or self.networks)

    def has_name(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.names or any(name.endswith(s) for s in self.suffixes)

    def has_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%")[0])
        return any(ip.version == n.version and ip in n for n in self.networks)


@functools.lru_cache(maxsize=64)
def parse_allowlist(entries: tuple[str, ...]) -> Allowlist:
    """Parse allowlist entries (``example.com``, ``*.example.com``, ``10.1.2.0/24``,
    ``10.1.2.3``); raises InputError naming a malformed one."""
    names: set[str] = set()
    suffixes: list[str] = []
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        label = r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
        if not re.fullmatch(rf"(\*\.)?{label}(\.{label})*", entry) or host_refused(entry):
            raise InputError(
                f"outbound allowlist entry '{raw}' is neither a host name (example.com, "
                "*.example.com) nor an IP network (10.0.0.0/8)"
            )
        if entry.startswith("*."):
            suffixes.append(entry[1:])
        else:
            names.add(entry)
    return Allowlist(frozenset(names), tuple(suffixes), tuple(networks))


def check_address(host: str, address: str, policy: NetworkPolicy) -> str | None:
    """Why ``host``, resolved to ``address``, may not be contacted under ``policy``: a
    message for BlockedAddress, or None when it may."""
    allowlist = parse_allowlist(policy.allowlist)
    kind = address_refused(address)
    prefix = f"refusing to connect to {host} ({address})"
    if kind and kind.startswith(METADATA):
        return f"{prefix}: {kind} address"
    if policy.workspace_allowlist:
        own = parse_allowlist(policy.workspace_allowlist)
        if not (own.has_address(address) or own.has_name(host)):
            return f"{prefix}: not in this workspace's outbound allowlist"
    if allowlist.has_address(address):
        return None
    if allowlist and not allowlist.has_name(host):
        return f"{prefix}: not in the outbound allowlist (CONVEYOR_OUTBOUND_ALLOWLIST)"
    if kind and not policy.allow_private:
        how = "add its network to CONVEYOR_OUTBOUND_ALLOWLIST or set "
        return f"{prefix}: {kind} address; {how}CONVEYOR_ALLOW_PRIVATE_NETWORK=true to allow it"
    return None
