"""The ``http.request`` node type."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.durations import Duration
from conveyor.errors import HttpStatusError, NodeError
from conveyor.nodes.base import NodeContext, NodeType

if TYPE_CHECKING:
    import httpx

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class HttpRequestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Method = "GET"
    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="request headers (an Idempotency-Key is added unless given)",
    )
    query: dict[str, Any] = Field(default_factory=dict, description="query parameters")
    json_body: Any = Field(default=None, alias="json", description="a JSON body")
    body: str | None = Field(default=None, description="a text body (instead of json)")
    timeout: Duration = Field(
        default=timedelta(seconds=30), description="bound on the whole request"
    )
    expected_status: list[int] | None = Field(
        default=None, description="accepted status codes; default: any 2xx"
    )

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestConfig:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either 'json' or 'body', not both")
        return self


class HttpRequest(NodeType):
    name = "http.request"
    title = "HTTP request"
    category = "http"
    icon = "globe"
    description = "Call an HTTP endpoint; JSON responses are parsed."
    config_model = HttpRequestConfig
    example = {
        "id": "create_order",
        "type": "http.request",
        "config": {
            "method": "POST",
            "url": "https://api.example.com/orders",
            "json": {"sku": "{{ input.sku }}", "quantity": 1},
            "timeout": "10s",
            "expected_status": [200, 201],
        },
    }

    def __init__(self, *, allow_private_network: bool = False) -> None:
        self.allow_private_network = allow_private_network

    async def run(self, ctx: NodeContext, config: HttpRequestConfig) -> Any:
        # Imported here, not at the top: httpx with its SSL, anyio and httpcore stack costs
        # a worker about 20 MB, and most workers never run an http.request step.
        import httpx

        from conveyor.nodes.outbound import make_client

        headers = {"Idempotency-Key": ctx.idempotency_key, **config.headers}
        timeout = config.timeout.total_seconds()
        async with make_client(
            allow_private_network=self.allow_private_network, timeout=timeout
        ) as client:
            try:
                response = await client.request(
                    config.method,
                    config.url,
                    headers=headers,
                    params=_query(config),
                    json=config.json_body,
                    content=config.body,
                )
            except httpx.TimeoutException as exc:
                raise NodeError(f"{config.method} {config.url} timed out: {exc!r}") from exc
            except httpx.TransportError as exc:
                raise NodeError(f"{config.method} {config.url} failed: {exc}") from exc
        ctx.report_usage(api_calls=1)
        ctx.log.info(f"{config.method} {config.url} -> {response.status_code}")
        output = {
            "status": response.status_code,
            "headers": dict(response.headers),
            "body": _body(response),
        }
        _check_status(config, response, output)
        return output


def _query(config: HttpRequestConfig) -> httpx.QueryParams:
    """The URL's own query string, with ``query`` added (httpx would replace it)."""
    import httpx

    params = httpx.URL(config.url).params
    for key, value in config.query.items():
        params = params.set(key, str(value))
    return params


def _body(response: httpx.Response) -> Any:
    content_type = response.headers.get("content-type", "")
    if "json" in content_type:
        try:
            return response.json()
        except ValueError:
            return response.text
    return response.text


def _check_status(config: HttpRequestConfig, response: httpx.Response, output: Any) -> None:
    status = response.status_code
    ok = status in config.expected_status if config.expected_status else 200 <= status < 300
    if ok:
        return
    retryable = status >= 500 or status in (408, 425, 429)
    raise HttpStatusError(
        f"{config.method} {config.url} answered {status}",
        non_retryable=not retryable,
        retry_after=_retry_after(response),
        details={"status": status, "body": output["body"]},
    )


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=float(value)) if value.replace(".", "", 1).isdigit() else None
