"""The ``http.request`` node type: its config, and the requests it makes (one, or one per
page when paginating), every connection through the outbound guard."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.durations import Duration
from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, NodeType

if TYPE_CHECKING:
    import httpx

    from conveyor.nodes.http_exchange import Auth, Outgoing, Received

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
MiB = 1024 * 1024
CREDENTIAL_TYPES = ("bearer", "basic", "header", "query")


class Paginate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    next: str = Field(
        description="where the next page's URL is: 'link' (the Link header's rel=\"next\") or "
        "a JSON path into the body such as '$.next' or 'body.links.next'; pages stop when "
        "it is missing or empty"
    )
    items: str | None = Field(
        default=None,
        description="JSON path of the list in each page's body (e.g. '$.data'); the lists "
        "are concatenated into the output's 'items'. Default: the body itself is the list",
    )
    max_pages: int = Field(default=10, ge=1, le=1000, description="pages read at most")


class HttpRequestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Method = "GET"
    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="request headers (an Idempotency-Key is added unless given)",
    )
    query: dict[str, Any] = Field(
        default_factory=dict, description="query parameters added to the URL's own"
    )
    json_body: Any = Field(default=None, alias="json", description="a JSON request body")
    body: str | None = Field(default=None, description="a raw request body")
    timeout: Duration = Field(
        default=timedelta(seconds=30), description="limit for each request (connect, read)"
    )
    expected_status: list[int] | None = Field(
        default=None, description="accepted status codes; default: any 2xx"
    )
    credential: str | None = Field(
        default=None,
        description="name of a credential of type bearer, basic, header or query; it (and "
        "Authorization and Cookie headers) is sent only to the origin of 'url'",
        json_schema_extra={"x-template": False},
    )
    follow_redirects: bool = Field(
        default=True, description="follow 301/302/303/307/308, each hop checked again"
    )
    max_redirects: int = Field(default=5, ge=0, le=20, description="redirects followed at most")
    paginate: Paginate | None = Field(default=None, description="read several pages (GET only)")
    max_response_bytes: int = Field(
        default=10 * MiB,
        ge=1,
        description="largest text or JSON body read (for all pages together); over it the "
        "step fails without retrying",
    )
    max_file_bytes: int = Field(
        default=512 * 1024,
        ge=1,
        description="largest binary body (a non-text content type), returned base64-encoded "
        "as 'file'; base64 grows it by a third, so the default fits the 1 MiB step output",
    )

    @model_validator(mode="after")
    def _consistent(self) -> HttpRequestConfig:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give either 'json' or 'body', not both")
        if self.paginate is not None and self.method != "GET":
            raise ValueError("'paginate' works with method GET only")
        return self


class HttpRequest(NodeType):
    name = "http.request"
    title = "HTTP request"
    category = "http"
    icon = "globe"
    description = (
        "Call an HTTP endpoint: JSON responses are parsed, binary ones returned as a file; "
        "redirects and pages followed, each checked by the outbound guard."
    )
    config_model = HttpRequestConfig
    example = {
        "id": "issues",
        "type": "http.request",
        "config": {
            "url": "https://api.github.com/repos/{{ input.repo }}/issues",
            "credential": "github",
            "paginate": {"next": "link", "max_pages": 5},
        },
    }

    async def run(self, ctx: NodeContext, config: HttpRequestConfig) -> Any:
        # Imported here, not at the top: httpx with its SSL, anyio and httpcore stack costs
        # a worker about 20 MB, and most workers never run an http.request step.
        from conveyor.nodes.http_exchange import Auth, auth_from
        from conveyor.nodes.outbound import make_client

        auth = Auth()
        if config.credential:
            auth = auth_from(await ctx.credential(config.credential, *CREDENTIAL_TYPES))
        out = _outgoing(ctx, config, auth)
        async with make_client(
            policy=ctx.network, timeout=config.timeout.total_seconds()
        ) as client:
            if config.paginate is None:
                received, output = await _fetch(
                    ctx, client, config, out, out.url, config.max_response_bytes
                )
                return {"status": received.status, "headers": dict(received.headers), **output}
            return await _pages(ctx, client, config, out, config.paginate)


def _outgoing(ctx: NodeContext, config: HttpRequestConfig, auth: Auth) -> Outgoing:
    import httpx

    from conveyor.nodes.http_exchange import Outgoing

    try:
        url = httpx.URL(config.url)
    except httpx.InvalidURL as exc:
        raise NodeError(f"invalid url {config.url!r}: {exc}", non_retryable=True) from exc
    for key, value in config.query.items():
        url = url.copy_set_param(key, str(value))
    headers = {"Idempotency-Key": ctx.idempotency_key, **config.headers}
    content = config.body.encode() if config.body is not None else None
    if config.json_body is not None:
        content = json.dumps(
            config.json_body, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    return Outgoing(
        method=config.method,
        url=url,
        headers=headers,
        content=content,
        auth=auth,
        follow_redirects=config.follow_redirects,
        max_redirects=config.max_redirects,
    )


async def _fetch(
    ctx: NodeContext,
    client: httpx.AsyncClient,
    config: HttpRequestConfig,
    out: Outgoing,
    url: httpx.URL,
    budget: int,
) -> tuple[Received, dict[str, Any]]:
    """One checked request (with its redirects): the response and its decoded body; an
    unaccepted status raises HttpStatusError."""
    from conveyor.nodes.http_exchange import exchange
    from conveyor.nodes.http_response import check_status, decoded, is_text

    def accept(status: int) -> bool:
        if config.expected_status:
            return status in config.expected_status
        return 200 <= status < 300

    def limit_for(content_type: str) -> tuple[int, str]:
        if is_text(content_type) is False:
            return min(config.max_file_bytes, budget), "max_file_bytes"
        return budget, "max_response_bytes"

    received = await exchange(ctx, client, out, url, accept=accept, limit_for=limit_for)
    accepted = accept(received.status)
    output = decoded(received, config.max_file_bytes)
    check_status(received, accepted, output["body"], ctx.now())
    return received, output


async def _pages(
    ctx: NodeContext,
    client: httpx.AsyncClient,
    config: HttpRequestConfig,
    out: Outgoing,
    paginate: Paginate,
) -> dict[str, Any]:
    """Read up to ``max_pages`` pages, each a checked request, concatenating their lists."""
    from conveyor.nodes.http_response import json_path

    items: list[Any] = []
    budget = config.max_response_bytes
    url: httpx.URL | None = out.url
    pages = 0
    last: dict[str, Any] = {}
    while url is not None and pages < paginate.max_pages:
        received, output = await _fetch(ctx, client, config, out, url, budget)
        budget -= len(received.content)
        pages += 1
        last = {"status": received.status, "headers": dict(received.headers)}
        body = output["body"]
        found = json_path(body, paginate.items) if paginate.items else body
        if not isinstance(found, list):
            where = f"'{paginate.items}'" if paginate.items else "the body"
            raise NodeError(
                f"page {pages} of {config.url}: {where} is not a list; set paginate.items to "
                "the JSON path of the list",
                non_retryable=True,
            )
        items.extend(found)
        ctx.report_progress(pages, None, f"page {pages}")
        url = _next_page(received, body, paginate.next)
    return {**last, "pages": pages, "items": items, "more": url is not None}


def _next_page(received: Received, body: Any, where: str) -> httpx.URL | None:
    import httpx

    from conveyor.nodes.http_response import json_path

    if where == "link":
        target = httpx.Response(200, headers=received.headers).links.get("next", {}).get("url")
    else:
        target = json_path(body, where)
    if not isinstance(target, str) or not target:
        return None
    try:
        url = received.url.join(target)
    except httpx.InvalidURL as exc:
        raise NodeError(f"next page URL {target!r} is invalid: {exc}", non_retryable=True) from exc
    if url.scheme not in ("http", "https") or url == received.url:
        return None
    return url
