"""The outbound-connection guard: which hosts and addresses a step may connect to, decided
once per connection after resolving the name, and the HTTP client that connects only to
the address it checked (so DNS rebinding cannot slip past).

Every outbound connection (HTTP, SMTP, databases, chat, LLM) goes through :func:`resolve`
or :func:`make_client`. The rules, in order (docs/security.md states them for users):

1. A host that is a cloud metadata name (``metadata.google.internal``) or an IPv4 address
   spelled any way but four decimal parts (``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``,
   ``127.1``) is refused whatever the policy, before any resolution.
2. The host is resolved once (``NetworkPolicy.resolver``, default getaddrinfo); every
   address it resolves to must pass, and the connection goes to the first one.
3. A cloud metadata address is refused whatever the policy.
4. An address inside a CIDR of the allowlist is allowed.
5. With a non-empty allowlist, a host whose name matches no entry is refused.
6. An internal address (loopback, private, link-local, unique-local, CGNAT, multicast,
   unspecified, reserved, or one of those embedded in an IPv6 address) is refused unless
   ``allow_private`` is set.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore
import httpx

from conveyor.errors import BlockedAddress, NodeError
from conveyor.nodes.addresses import check_address, host_refused, literal_address
from conveyor.nodes.base import NetworkPolicy


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses getaddrinfo gives for ``host``, in its order, without repeats."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve(host: str, port: int, policy: NetworkPolicy) -> str:
    """The address to connect to for ``host``: resolved once, every address checked against
    ``policy``; connect to the returned IP (not the name again), so DNS cannot rebind in
    between. Raises BlockedAddress. Every outbound connection (HTTP, SMTP, databases, chat,
    LLM) goes through this function or through :func:`make_client`."""
    return (await resolve_all(host, port, policy))[0]


async def resolve_all(host: str, port: int, policy: NetworkPolicy) -> list[str]:
    """Every address of ``host``, in the resolver's order, all checked (one refused address
    refuses the host); a caller may try them in turn."""
    bare = host.strip("[]")
    refused = host_refused(bare)
    if refused:
        raise BlockedAddress(f"refusing to connect to {host}: {refused}")
    literal = literal_address(bare)
    if literal is not None:
        addresses = [str(literal)]
    else:
        resolver = policy.resolver or system_resolver
        try:
            addresses = list(await resolver(bare, port))
        except OSError as exc:  # often transient (EAI_AGAIN): a retryable step error
            raise NodeError(f"could not resolve {host}: {exc}") from exc
    if not addresses:
        raise NodeError(f"could not resolve {host}: no addresses")
    for address in addresses:
        message = check_address(bare, address, policy)
        if message:
            raise BlockedAddress(message)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host through :func:`resolve_all`, then connects to a checked IP (the
    first that accepts); TLS still verifies (and sends SNI for) the name in the URL."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._policy = policy

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_all(host, port, self._policy)
        for address in addresses[:-1]:
            # An IPv6 answer first on a host without IPv6 routes: try the next checked one.
            try:
                return await self._connect(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                continue
        return await self._connect(addresses[-1], port, timeout, local_address, socket_options)

    async def _connect(
        self,
        address: str,
        port: int,
        timeout: float | None,  # noqa: ASYNC109 (httpcore interface)
        local_address: str | None,
        socket_options: Iterable[Any] | None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_tcp(
            address,
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


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying context for every client: building one loads the CA bundle (about
    half a second), and a context is safe to share between connections."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose connections go through :class:`GuardedBackend`."""

    def __init__(self, policy: NetworkPolicy) -> None:
        context = _ssl_context()
        super().__init__(verify=context, trust_env=False)  # given a context, builds none
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(policy),
        )


def make_client(
    *,
    allow_private_network: bool = False,
    timeout: float,
    policy: NetworkPolicy | None = None,
) -> httpx.AsyncClient:
    """An httpx client whose every connection is checked by ``policy`` (redirects are not
    followed: a caller that follows one makes a new request, checked again). No proxy from
    the environment is used: a proxy would connect on the client's behalf, unchecked."""
    policy = policy or NetworkPolicy()
    if allow_private_network and not policy.allow_private:
        policy = dataclasses.replace(policy, allow_private=True)
    return httpx.AsyncClient(
        transport=GuardedTransport(policy),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


__all__ = [
    "GuardedBackend",
    "GuardedTransport",
    "make_client",
    "resolve",
    "resolve_all",
    "system_resolver",
]
