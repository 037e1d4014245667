"""The outbound guard against real sockets: every refused form is refused before any
connection is made (a listening socket on this machine proves no connection reached it),
names are resolved once per connection (DNS rebinding cannot swap the address between the
check and the connect), and the allowlist admits exactly what it lists."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from conveyor.errors import BlockedAddress
from conveyor.nodes.base import NetworkPolicy
from conveyor.nodes.outbound import make_client, resolve

QUICK = 5.0


class Listener:
    """A listening TCP socket that counts the connections the kernel completed on it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, dual_stack: bool = False) -> None:
        if dual_stack:
            self.sock = socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
        else:
            self.sock = socket.create_server((host, port))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0

    def connections(self) -> int:
        """Connections made so far (the kernel queues each one whether or not we accept)."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return self.accepted
            conn.close()
            self.accepted += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener(dual_stack=socket.has_dualstack_ipv6())
    try:
        yield found
    finally:
        found.close()


class Resolver:
    """A DNS stand-in: each name answers its list of answers in turn (the last repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        queue = self.answers.get(host)
        if queue is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return queue.pop(0) if len(queue) > 1 else queue[0]


async def _get(url: str, policy: NetworkPolicy) -> httpx.Response:
    # The listener never answers: an allowed request ends in a read timeout.
    async with make_client(policy=policy, timeout=0.5) as client:
        return await client.get(url)


async def test_the_listener_sees_a_connection_the_guard_allows(listener: Listener) -> None:
    """The control for every test below: an allowed request does reach the listener."""
    with pytest.raises(httpx.TransportError):  # the listener closes without answering
        await _get(f"http://127.0.0.1:{listener.port}/", NetworkPolicy(allow_private=True))
    assert listener.connections() == 1


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0x7f.0.0.1", "017700000001", "127.1", "127.0.1"]
)
async def test_non_standard_ipv4_spellings_never_connect_even_when_private_is_allowed(
    listener: Listener, host: str
) -> None:
    # getaddrinfo (inet_aton) reads every one of these as 127.0.0.1.
    assert socket.getaddrinfo(host, listener.port)[0][4][0] == "127.0.0.1"
    policy = NetworkPolicy(allow_private=True)
    with pytest.raises(BlockedAddress, match=r"non-standard \(decimal, octal or hex\) spelling"):
        await _get(f"http://{host}:{listener.port}/", policy)
    with pytest.raises(BlockedAddress, match="non-standard"):
        await resolve(host, listener.port, policy)
    assert listener.connections() == 0


@pytest.mark.parametrize(
    "host", ["127.0.0.1.", "2130706433.", "0x7f000001.", "127.1.", "169.254.169.254."]
)
async def test_a_trailing_dot_is_refused_before_any_resolver_is_asked(
    listener: Listener, host: str
) -> None:
    """glibc refuses these, but a resolver may read them as the address (musl, a proxy's
    DNS): the guard refuses them itself, even to a resolver that answers loopback."""
    dns = Resolver({host: [["127.0.0.1"]]})
    policy = NetworkPolicy(allow_private=True, resolver=dns)
    with pytest.raises(BlockedAddress, match="non-standard"):
        await _get(f"http://{host}:{listener.port}/", policy)
    assert dns.calls == [] and listener.connections() == 0


async def test_an_octal_part_is_refused_by_the_url_parser_and_by_resolve(
    listener: Listener,
) -> None:
    with pytest.raises(httpx.InvalidURL):
        await _get(f"http://0177.0.0.1:{listener.port}/", NetworkPolicy(allow_private=True))
    with pytest.raises(BlockedAddress, match="non-standard"):
        await resolve("0177.0.0.1", listener.port, NetworkPolicy(allow_private=True))
    assert listener.connections() == 0


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:7f00:1]", "loopback"),
        ("[0:0:0:0:0:ffff:127.0.0.1]", "loopback"),
        ("localhost", "loopback"),
        ("LOCALHOST", "loopback"),
        ("127\u30020\u30020\u30021", "loopback"),  # ideographic full stops (IDNA maps them)
        ("127.0.0.1%2e", "loopback"),  # read as a zone id: judged on the address dialled
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
        ("[fe80::1%25lo]", "link-local"),
        ("[fc00::1]", "unique-local"),
        ("169.254.169.254", "cloud metadata"),
        ("[::ffff:a9fe:a9fe]", "cloud metadata"),
    ],
)
async def test_internal_addresses_in_any_form_are_refused_before_connecting(
    listener: Listener, host: str, kind: str
) -> None:
    with pytest.raises(BlockedAddress, match=kind):
        await _get(f"http://{host}:{listener.port}/", NetworkPolicy())
    assert listener.connections() == 0


@pytest.mark.parametrize(
    "host", ["\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54", "\uff11\uff12\uff17.0.0.1"]
)
async def test_fullwidth_hosts_never_connect(listener: Listener, host: str) -> None:
    """Fullwidth letters and digits: the URL parser refuses them, so nothing is dialled."""
    with pytest.raises((httpx.InvalidURL, BlockedAddress)):
        await _get(f"http://{host}:{listener.port}/", NetworkPolicy())
    assert listener.connections() == 0


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::127.0.0.1", "loopback"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::", "loopback"),
        ("10.1.2.3", "private"),
        ("fd00::1", "unique-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.64.0.1", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
    ],
)
async def test_a_name_resolving_to_an_internal_address_is_refused_before_connecting(
    listener: Listener, answer: str, kind: str
) -> None:
    dns = Resolver({"service.example": [[answer]]})
    policy = NetworkPolicy(resolver=dns)
    with pytest.raises(BlockedAddress, match=kind):
        await _get(f"http://service.example:{listener.port}/", policy)
    with pytest.raises(BlockedAddress, match=kind):
        await resolve("service.example", listener.port, policy)
    assert dns.calls == ["service.example", "service.example"]
    assert listener.connections() == 0


async def test_one_internal_answer_among_public_ones_refuses_the_name(listener: Listener) -> None:
    dns = Resolver({"mixed.example": [["93.184.215.14", "127.0.0.1"]]})
    with pytest.raises(BlockedAddress, match=r"\(127\.0\.0\.1\): loopback"):
        await _get(f"http://mixed.example:{listener.port}/", NetworkPolicy(resolver=dns))
    assert listener.connections() == 0


async def test_metadata_names_are_refused_without_resolving(listener: Listener) -> None:
    dns = Resolver({"metadata.google.internal": [["127.0.0.1"]]})
    policy = NetworkPolicy(allow_private=True, resolver=dns)
    with pytest.raises(BlockedAddress, match="cloud metadata"):
        await _get(f"http://metadata.google.internal:{listener.port}/", policy)
    assert dns.calls == []
    assert listener.connections() == 0


async def test_dns_rebinding_cannot_swap_the_address_between_check_and_connect() -> None:
    """``rebind.example`` answers an allowed address once, then a refused one. The guard
    resolves once per connection and connects to the address it checked: the first
    request reaches the allowed listener (a guard that re-resolved to connect would reach
    the refused one), the second is refused, and the refused listener sees nothing."""
    allowed = Listener("127.0.0.1")
    refused = Listener("127.0.0.2", allowed.port)
    try:
        dns = Resolver({"rebind.example": [["127.0.0.1"], ["127.0.0.2"]]})
        # The allowlisted 127.0.0.1 stands for a public address here.
        policy = NetworkPolicy(allowlist=("127.0.0.1/32", "rebind.example"), resolver=dns)
        with pytest.raises(httpx.TransportError):
            await _get(f"http://rebind.example:{allowed.port}/", policy)
        assert dns.calls == ["rebind.example"]
        assert (allowed.connections(), refused.connections()) == (1, 0)
        with pytest.raises(BlockedAddress, match=r"rebind\.example \(127\.0\.0\.2\): loopback"):
            await _get(f"http://rebind.example:{allowed.port}/", policy)
        assert dns.calls == ["rebind.example", "rebind.example"]
        assert (allowed.connections(), refused.connections()) == (1, 0)
    finally:
        allowed.close()
        refused.close()


async def test_the_allowlist_admits_listed_networks_and_names_only(listener: Listener) -> None:
    dns = Resolver({"api.corp.example": [["127.0.0.1"]], "other.example": [["127.0.0.1"]]})
    url = f"http://api.corp.example:{listener.port}/"
    # A listed private network is allowed without allow_private.
    cidr = NetworkPolicy(allowlist=("127.0.0.0/30",), resolver=dns)
    with pytest.raises(httpx.TransportError):
        await _get(url, cidr)
    assert await resolve("api.corp.example", listener.port, cidr) == "127.0.0.1"
    assert listener.connections() == 1
    # A listed name resolving to an unlisted private address is still refused ...
    names = NetworkPolicy(allowlist=("*.corp.example",), resolver=dns)
    with pytest.raises(BlockedAddress, match="loopback address"):
        await _get(url, names)
    # ... unless private addresses are allowed; an unlisted name never is.
    names_private = NetworkPolicy(allowlist=("*.corp.example",), allow_private=True, resolver=dns)
    with pytest.raises(httpx.TransportError):
        await _get(url, names_private)
    with pytest.raises(BlockedAddress, match="not in the outbound allowlist"):
        await _get(f"http://other.example:{listener.port}/", names_private)
    with pytest.raises(BlockedAddress, match="not in the outbound allowlist"):
        await resolve("other.example", listener.port, names_private)
    assert listener.connections() == 2


async def test_a_name_that_does_not_resolve_is_a_retryable_error() -> None:
    from conveyor.errors import NodeError

    dns = Resolver({})
    with pytest.raises(NodeError, match=r"could not resolve nowhere\.example") as caught:
        await resolve("nowhere.example", 80, NetworkPolicy(resolver=dns))
    assert not caught.value.non_retryable
    assert not isinstance(caught.value, BlockedAddress)


async def test_a_refused_connection_moves_on_to_the_next_checked_address() -> None:
    """Nothing listens on 127.0.0.2 at the port: the connection goes to 127.0.0.1 next, as
    it must when a host's IPv6 answer comes first on a machine without IPv6 routes."""
    listener = Listener("127.0.0.1")
    try:
        dns = Resolver({"two.example": [["127.0.0.2", "127.0.0.1"]]})
        policy = NetworkPolicy(allowlist=("127.0.0.0/30",), resolver=dns)
        with pytest.raises(httpx.ReadTimeout):  # connected; the listener never answers
            await _get(f"http://two.example:{listener.port}/", policy)
        assert listener.connections() == 1
        # Every answer is checked before any is tried.
        checked = NetworkPolicy(allowlist=("127.0.0.1/32",), resolver=dns)
        with pytest.raises(BlockedAddress, match=r"\(127\.0\.0\.2\)"):
            await _get(f"http://two.example:{listener.port}/", checked)
        assert listener.connections() == 1
    finally:
        listener.close()


def _self_signed(folder: Path, name: str) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for ``name``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


async def test_tls_is_verified_for_the_name_in_the_url_though_the_ip_is_dialled(
    tmp_path: Path,
) -> None:
    """The guard connects to the checked IP, yet the TLS handshake names ``api.test`` (SNI)
    and the certificate is still verified: a self-signed one is refused."""
    context = _self_signed(tmp_path, "api.test")
    names: list[str | None] = []

    def record(_sock: ssl.SSLSocket, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(QUICK)
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with contextlib.suppress(ssl.SSLError, OSError):
            context.wrap_socket(conn, server_side=True).close()
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        dns = Resolver({"api.test": [["127.0.0.1"]]})
        policy = NetworkPolicy(allowlist=("127.0.0.1/32",), resolver=dns)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await _get(f"https://api.test:{port}/", policy)
        thread.join(QUICK)
    finally:
        server.close()
    assert names == ["api.test"]
    assert dns.calls == ["api.test"]
