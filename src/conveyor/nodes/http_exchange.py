"""One HTTP exchange of the ``http.request`` node: a request and the redirects it follows,
each hop a new request through the guarded client (so each is checked again), secrets sent
only to the origin of the configured URL, the body read within a byte limit."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

from conveyor.errors import BlockedAddress, NodeError
from conveyor.nodes.base import Credential, NodeContext

REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Dropped from every request to another origin than the configured URL's.
SENSITIVE = frozenset({"authorization", "cookie", "proxy-authorization"})
# How much of an error response is kept for the step's error details.
ERROR_BODY_BYTES = 64 * 1024
Origin = tuple[str, str, int]


def origin_of(url: httpx.URL) -> Origin:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return (url.scheme, url.host, port)


@dataclass(frozen=True)
class Auth:
    """What a credential adds to a request: headers and query parameters."""

    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def auth_from(credential: Credential) -> Auth:
    """The headers or query parameters a bearer, basic, header or query credential sends."""
    data = credential.data

    def need(key: str) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise NodeError(
                f"credential '{credential.name}' ({credential.type}) has no '{key}'",
                non_retryable=True,
            )
        return value

    if credential.type == "bearer":
        return Auth(headers={"Authorization": f"Bearer {need('token')}"})
    if credential.type == "basic":
        pair = f"{need('username')}:{data.get('password') or ''}".encode()
        return Auth(headers={"Authorization": f"Basic {base64.b64encode(pair).decode()}"})
    if credential.type == "header":
        return Auth(headers={need("name"): need("value")})
    return Auth(params={need("name"): need("value")})


@dataclass
class Outgoing:
    """The request as configured: what every hop starts from."""

    method: str
    url: httpx.URL
    headers: dict[str, str]
    content: bytes | None
    auth: Auth
    follow_redirects: bool
    max_redirects: int

    @property
    def origin(self) -> Origin:
        return origin_of(self.url)


@dataclass(frozen=True)
class Received:
    """A final (non-redirect) response with its body read. ``where`` names it for logs and
    errors (method and URL, without a query credential)."""

    where: str
    url: httpx.URL
    status: int
    headers: httpx.Headers
    content: bytes
    truncated: bool = False

    @property
    def content_type(self) -> str:
        return str(self.headers.get("content-type", ""))


Accept = Callable[[int], bool]
# Limit for a response's body by its content type: (bytes, the config field that sets it).
LimitFor = Callable[[str], tuple[int, str]]


async def exchange(
    ctx: NodeContext,
    client: httpx.AsyncClient,
    out: Outgoing,
    url: httpx.URL,
    *,
    accept: Accept,
    limit_for: LimitFor,
) -> Received:
    """Send ``out`` to ``url``, following redirects (each hop checked again by the client's
    guard); the final response's body read within ``limit_for`` its content type (an
    unaccepted status: its first 64 KiB, for the error)."""
    method, content, start = out.method, out.content, url
    hidden = tuple(out.auth.params)
    for hop in range(out.max_redirects + 1):
        request = _request(client, out, method, url, content)
        response = await _send(client, request, hop, hidden)
        ctx.report_usage(api_calls=1)
        ctx.log.info(f"{method} {shown(url, hidden)} -> {response.status_code}")
        try:
            target = _redirect_target(response, hidden) if out.follow_redirects else None
            if target is None:
                return await _read(response, method, accept, limit_for, hidden)
        finally:
            await response.aclose()
        method, content = _after_redirect(response.status_code, method, content)
        url = target
    raise NodeError(
        f"{out.method} {shown(start, hidden)}: more than {out.max_redirects} redirects "
        "(max_redirects)",
        non_retryable=True,
    )


def _request(
    client: httpx.AsyncClient, out: Outgoing, method: str, url: httpx.URL, content: bytes | None
) -> httpx.Request:
    """One hop's request: secrets (the credential, Authorization, Cookie) only when it goes
    to the configured URL's origin."""
    same_origin = origin_of(url) == out.origin
    headers = {
        name: value
        for name, value in out.headers.items()
        if same_origin or name.lower() not in SENSITIVE
    }
    if content is None:
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    if same_origin:
        headers.update(out.auth.headers)
        for name, value in out.auth.params.items():
            url = url.copy_set_param(name, value)
    return client.build_request(method, url, headers=headers, content=content)


async def _send(
    client: httpx.AsyncClient, request: httpx.Request, hop: int, hidden: tuple[str, ...]
) -> httpx.Response:
    where = f"{request.method} {shown(request.url, hidden)}"
    try:
        return await client.send(request, stream=True)
    except BlockedAddress as exc:
        if hop == 0:
            raise
        raise BlockedAddress(f"redirect to {shown(request.url, hidden)}: {exc.message}") from exc
    except httpx.TimeoutException as exc:
        raise NodeError(f"{where} timed out: {exc!r}") from exc
    except httpx.TransportError as exc:
        raise NodeError(f"{where} failed: {exc!r}") from exc


def _redirect_target(response: httpx.Response, hidden: tuple[str, ...]) -> httpx.URL | None:
    source = shown(response.url, hidden)
    location = response.headers.get("location")
    if response.status_code not in REDIRECTS or not location:
        return None
    try:
        target = response.url.join(location)
    except httpx.InvalidURL as exc:
        raise NodeError(
            f"redirect from {source} to an invalid URL {location!r}: {exc}",
            non_retryable=True,
        ) from exc
    if target.scheme not in ("http", "https"):
        raise NodeError(
            f"redirect from {source} to {location!r}: only http and https are followed",
            non_retryable=True,
        )
    return target


def _after_redirect(status: int, method: str, content: bytes | None) -> tuple[str, bytes | None]:
    """The method and body of the next hop, as browsers and httpx do it: 303 turns
    everything but HEAD into a GET, 301 and 302 turn a POST into a GET; 307 and 308 keep
    both."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        return "GET", None
    return method, content


async def _read(
    response: httpx.Response,
    method: str,
    accept: Accept,
    limit_for: LimitFor,
    hidden: tuple[str, ...],
) -> Received:
    where = f"{method} {shown(response.url, hidden)}"
    accepted = accept(response.status_code)
    limit, setting = limit_for(response.headers.get("content-type", ""))
    if not accepted:
        limit = min(limit, ERROR_BODY_BYTES)
    # A HEAD answer declares the length of a body it does not send.
    declared = response.headers.get("content-length", "") if method != "HEAD" else ""
    if accepted and declared.isdigit() and int(declared) > limit:
        raise _too_large(where, limit, setting)
    chunks: list[bytes] = []
    size = 0
    truncated = False
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                if accepted:
                    raise _too_large(where, limit, setting)
                chunks.append(chunk[: len(chunk) - (size - limit)])
                truncated = True
                break
            chunks.append(chunk)
    except httpx.TimeoutException as exc:
        raise NodeError(f"{where} timed out: {exc!r}") from exc
    except httpx.TransportError as exc:
        raise NodeError(f"{where} failed: {exc!r}") from exc
    return Received(
        where, response.url, response.status_code, response.headers, b"".join(chunks), truncated
    )


def _too_large(where: str, limit: int, setting: str) -> NodeError:
    return NodeError(
        f"{where}: the response body is over {setting} ({limit} bytes); "
        f"raise {setting} in the node's config if it should be read",
        non_retryable=True,
    )


def shown(url: httpx.URL, hidden: Iterable[str]) -> str:
    """A URL for logs and errors, without the query parameters a credential added."""
    for name in hidden:
        url = url.copy_remove_param(name)
    return str(url)
