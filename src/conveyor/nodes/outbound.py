"""The outbound-connection guard: refuses private, loopback, link-local and metadata
addresses at connect time (after DNS resolution, so rebinding cannot slip past)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore
import httpx

from conveyor.errors import BlockedAddress
from conveyor.nodes.base import NetworkPolicy

_SHARED = ipaddress.ip_network("100.64.0.0/10")


def address_refused(address: str) -> str | None:
    """Why an IP address may not be contacted, or None when it may."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata)"),
        (ip.is_private, "private"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED, "shared (CGNAT)"),
        (ip.is_multicast, "multicast"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_reserved, "reserved"),
    )
    for refused, kind in checks:
        if refused:
            return kind
    return None


async def resolve(host: str, port: int, policy: NetworkPolicy) -> str:
    """The address to connect to for ``host``: resolved once, every address checked against
    ``policy``; connect to the returned IP (not the name again), so DNS cannot rebind in
    between. Raises BlockedAddress. Every outbound connection (HTTP, SMTP, databases, chat,
    LLM) goes through this function or through :func:`make_client`."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise BlockedAddress(f"{host} did not resolve")
    if policy.allow_private:
        return addresses[0]
    for address in addresses:
        kind = address_refused(address)
        if kind:
            raise BlockedAddress(
                f"refusing to connect to {host} ({address}): {kind} address; set "
                "CONVEYOR_ALLOW_PRIVATE_NETWORK=true to allow it"
            )
    return addresses[0]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses blocked addresses, then connects to a checked IP."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            kind = address_refused(address)
            if kind:
                raise BlockedAddress(
                    f"refusing to connect to {host} ({address}): {kind} address; set "
                    "CONVEYOR_ALLOW_PRIVATE_NETWORK=true to allow it"
                )
        return await self._inner.connect_tcp(
            addresses[0],
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("unix sockets are not allowed for outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose connections go through :class:`GuardedBackend`."""

    def __init__(self) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(),
        )


def make_client(
    *,
    allow_private_network: bool = False,
    timeout: float,
    policy: NetworkPolicy | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose every connection is checked by ``policy`` (redirects are not
    followed: a caller that follows one makes a new request, checked again)."""
    if policy is not None:
        allow_private_network = allow_private_network or policy.allow_private
    transport = None if allow_private_network else GuardedTransport()
    return httpx.AsyncClient(
        transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
    )
