"""One chat completion over HTTP (OpenAI-compatible or Anthropic), streamed or not, with
the endpoint's failures mapped onto step errors: a refused key is final, a rate limit, a
server error, a timeout or a stream cut midway is retryable (a retry restarts the call)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from conveyor.errors import HttpStatusError, NodeError
from conveyor.nodes import llm_wire as wire
from conveyor.nodes.base import NetworkPolicy

if TYPE_CHECKING:
    import httpx

Delta = Callable[[str], None]
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class Endpoint:
    provider: wire.Provider
    base_url: str
    api_key: str

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + wire.path(self.provider)


async def complete(
    endpoint: Endpoint,
    request: wire.ChatRequest,
    *,
    network: NetworkPolicy,
    patience: timedelta,
    idempotency_key: str,
    on_delta: Delta | None = None,
) -> wire.ChatAnswer:
    """One completion; streamed text goes to ``on_delta`` as it arrives. ``patience``
    bounds each wait (to connect, for the answer, for the next streamed bytes), not the
    whole call: a long answer that keeps streaming is not cut."""
    import httpx

    from conveyor.nodes.outbound import make_client

    seconds = patience.total_seconds()
    body = wire.body(endpoint.provider, request)
    headers = wire.headers(endpoint.provider, endpoint.api_key, idempotency_key)
    where = f"{request.model} at {endpoint.url}"
    try:
        async with make_client(policy=network, timeout=seconds) as client:
            if not request.stream:
                response = await client.post(endpoint.url, json=body, headers=headers)
                _check(response, where)
                return _parsed(endpoint.provider, response, where)
            async with client.stream("POST", endpoint.url, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    await response.aread()
                _check(response, where)
                return await _streamed(endpoint.provider, response, on_delta, where)
    except httpx.TimeoutException as exc:
        raise NodeError(f"{where} timed out after {seconds:g}s ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise NodeError(f"{where} failed: {exc!r}") from exc


def _check(response: httpx.Response, where: str) -> None:
    status = response.status_code
    if status < 400:
        return
    message = _error_message(response)
    details = {"status": status, "body": message}
    if status in (401, 403):
        raise HttpStatusError(
            f"{where} refused the credential ({status}): {message}; check the llm credential's "
            "api_key",
            non_retryable=True,
            details=details,
        )
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    raise HttpStatusError(
        f"{where} answered {status}: {message}",
        non_retryable=not retryable,
        retry_after=_retry_after(response),
        details=details,
    )


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return response.text[:500]


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return timedelta(seconds=max(float(value), 0.0)) if value else None
    except ValueError:
        return None  # an HTTP date: leave the delay to the retry policy


def _parsed(provider: wire.Provider, response: httpx.Response, where: str) -> wire.ChatAnswer:
    try:
        data: Any = response.json()
    except ValueError as exc:
        raise NodeError(f"{where} answered with something other than JSON") from exc
    if provider == "anthropic":
        return wire.anthropic_answer(data)
    return wire.openai_answer(data)


async def _streamed(
    provider: wire.Provider, response: httpx.Response, on_delta: Delta | None, where: str
) -> wire.ChatAnswer:
    import httpx

    fold: wire.OpenAIStream | wire.AnthropicStream = (
        wire.AnthropicStream() if provider == "anthropic" else wire.OpenAIStream()
    )
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, ``event:`` names (the type is in the data too)
            text = fold.feed(line[5:].strip())
            if text and on_delta is not None:
                on_delta(text)
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise _cut(fold.answer, where) from exc
    except ValueError as exc:
        raise NodeError(f"{where} sent a malformed stream event: {exc}") from exc
    answer = fold.finish()
    if not answer.complete:
        raise _cut(answer, where)
    return answer


def _cut(answer: wire.ChatAnswer, where: str) -> NodeError:
    return NodeError(
        f"the stream from {where} was cut midway (after {len(answer.text)} characters); "
        "a retry asks again"
    )
