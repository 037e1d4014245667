"""The http.request node against real local HTTP servers: credentials in each form and only
to the configured origin, redirects re-checked, pagination, size limits, binary files,
timeouts and Retry-After. The node runs directly here (no database); workflows on both
backends are in test_http_workflows.py."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from conveyor.errors import BlockedAddress, HttpStatusError, NodeError
from conveyor.nodes.base import Credential, NetworkPolicy, NodeContext
from conveyor.nodes.http import HttpRequest, HttpRequestConfig
from tests.integration.httpserver import LocalServer

QUICK = 5.0
TOKEN = "tok-5d1e9a7c33"
# The local servers stand for public ones: 127.0.0.1 is allowlisted, nothing else is.
LOCAL = NetworkPolicy(allowlist=("127.0.0.1/32",))


class Vault:
    """A CredentialSource holding fixed credentials."""

    def __init__(self, *found: Credential) -> None:
        self.found = {c.name: c for c in found}

    async def get(self, name: str) -> Credential:
        if name not in self.found:
            raise NodeError(f"no credential named '{name}'", non_retryable=True)
        return self.found[name]


class NoServices:
    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        raise AssertionError("http.request does not notify")

    async def start_child(self, *args: Any) -> str:
        raise AssertionError("http.request starts no child")


class Call:
    """One run of the node: its context (log, usage, live messages) and its result."""

    def __init__(self, policy: NetworkPolicy, vault: Vault) -> None:
        self.live: list[tuple[str, dict[str, Any]]] = []
        self.ctx = NodeContext(
            execution_id="exec-1",
            workflow_id="wf-1",
            node_id="call",
            attempt=1,
            services=NoServices(),
            clock=lambda: datetime.now(UTC),
            credentials=vault,
            network=policy,
            live=lambda kind, data: self.live.append((kind, data)),
        )

    async def __call__(self, config: dict[str, Any]) -> Any:
        return await HttpRequest().run(self.ctx, HttpRequestConfig.model_validate(config))


async def run(
    config: dict[str, Any], policy: NetworkPolicy = LOCAL, *credentials: Credential
) -> Any:
    return await Call(policy, Vault(*credentials))(config)


@pytest.fixture
def other_server() -> Iterator[LocalServer]:
    """Another origin on 127.0.0.1 (another port)."""
    server = LocalServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def internal_server() -> Iterator[LocalServer]:
    """A server on 127.0.0.2: loopback, and not in LOCAL's allowlist."""
    server = LocalServer("127.0.0.2")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def to(server: LocalServer, path: str) -> str:
    return quote(f"{server.base_url}{path}", safe="")


# -- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credential", "header", "value"),
    [
        (Credential("api", "bearer", {"token": TOKEN}), "Authorization", f"Bearer {TOKEN}"),
        (
            Credential("api", "basic", {"username": "ada", "password": TOKEN}),
            "Authorization",
            "Basic " + base64.b64encode(f"ada:{TOKEN}".encode()).decode(),
        ),
        (Credential("api", "header", {"name": "X-Api-Key", "value": TOKEN}), "X-Api-Key", TOKEN),
    ],
)
async def test_header_credentials_arrive(
    http_server: LocalServer, credential: Credential, header: str, value: str
) -> None:
    call = Call(LOCAL, Vault(credential))
    output = await call({"url": f"{http_server.base_url}/echo", "credential": "api"})
    [request] = http_server.requests_to("/echo")
    assert request.headers[header] == value
    assert output["body"]["headers"][header] == value
    assert request.idempotency_key == "exec-1:call"


async def test_a_query_credential_arrives_and_stays_out_of_the_step_log(
    http_server: LocalServer,
) -> None:
    call = Call(LOCAL, Vault(Credential("api", "query", {"name": "api_key", "value": TOKEN})))
    await call({"url": f"{http_server.base_url}/echo?a=1", "query": {"b": 2}, "credential": "api"})
    [request] = http_server.requests_to("/echo")
    assert request.query == {"a": "1", "b": "2", "api_key": TOKEN}
    assert [line["message"] for line in call.ctx.log.lines] == [
        f"GET {http_server.base_url}/echo?a=1&b=2 -> 200"
    ]


async def test_a_credential_of_another_type_is_refused(http_server: LocalServer) -> None:
    smtp = Credential("mail", "smtp", {"host": "mail.example.com", "password": TOKEN})
    with pytest.raises(NodeError, match="credential 'mail' is of type smtp") as caught:
        await run({"url": f"{http_server.base_url}/echo", "credential": "mail"}, LOCAL, smtp)
    assert caught.value.non_retryable
    assert http_server.requests == []


async def test_secrets_go_only_to_the_configured_origin(
    http_server: LocalServer, other_server: LocalServer
) -> None:
    header = Credential("api", "header", {"name": "X-Api-Key", "value": TOKEN})
    headers = {"Authorization": "Bearer user-given", "Cookie": "s=1", "X-Trace": "t-1"}
    same = f"{http_server.base_url}/redirect?to={to(http_server, '/echo')}"
    await run({"url": same, "headers": headers, "credential": "api"}, LOCAL, header)
    [kept] = http_server.requests_to("/echo")
    assert (kept.headers["Authorization"], kept.headers["Cookie"]) == ("Bearer user-given", "s=1")
    assert kept.headers["X-Api-Key"] == TOKEN

    away = f"{http_server.base_url}/redirect?to={to(other_server, '/echo')}"
    output = await run({"url": away, "headers": headers, "credential": "api"}, LOCAL, header)
    [moved] = other_server.requests_to("/echo")
    assert {"Authorization", "Cookie", "X-Api-Key"}.isdisjoint(moved.headers)
    assert moved.headers["X-Trace"] == "t-1"
    assert moved.idempotency_key == "exec-1:call"
    assert output["body"]["path"] == "/echo"

    query = Credential("api", "query", {"name": "api_key", "value": TOKEN})
    await run({"url": away, "credential": "api"}, LOCAL, query)
    assert [r.query for r in other_server.requests_to("/echo")][-1] == {}
    assert http_server.requests_to("/redirect")[-1].query["api_key"] == TOKEN


# -- redirects -------------------------------------------------------------------------------


async def test_redirects_change_the_method_as_browsers_do(http_server: LocalServer) -> None:
    echo = to(http_server, "/echo")
    post = {"method": "POST", "json": {"n": 1}}
    after_303 = await run({"url": f"{http_server.base_url}/redirect?code=303&to={echo}", **post})
    assert (after_303["body"]["method"], after_303["body"]["json"]) == ("GET", None)
    after_307 = await run({"url": f"{http_server.base_url}/redirect?code=307&to={echo}", **post})
    assert (after_307["body"]["method"], after_307["body"]["json"]) == ("POST", {"n": 1})
    assert after_307["body"]["headers"]["Content-Type"] == "application/json"


async def test_redirects_stop_at_max_redirects(http_server: LocalServer) -> None:
    loop = f"{http_server.base_url}/redirect?to=%2Fredirect%3Fto%3D%252Fecho"
    assert (await run({"url": loop, "max_redirects": 2}))["body"]["path"] == "/echo"
    with pytest.raises(NodeError, match="more than 1 redirects") as caught:
        await run({"url": loop, "max_redirects": 1})
    assert caught.value.non_retryable
    assert len(http_server.requests_to("/redirect")) == 4
    kept = await run({"url": loop, "follow_redirects": False, "expected_status": [302]})
    assert (kept["status"], kept["headers"]["location"]) == (302, "/redirect?to=%2Fecho")


async def test_a_redirect_to_a_refused_address_is_refused_before_connecting(
    http_server: LocalServer, internal_server: LocalServer
) -> None:
    internal = to(internal_server, "/echo")
    url = f"{http_server.base_url}/redirect?to={internal}"
    with pytest.raises(BlockedAddress, match=r"redirect to http://127\.0\.0\.2:\d+/echo: ref"):
        await run({"url": url})
    for target, refusal in [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        (f"http://2130706433:{internal_server.base_url.rsplit(':', 1)[1]}/echo", "non-standard"),
        ("http://[::ffff:127.0.0.2]/echo", "not in the outbound allowlist"),
    ]:
        with pytest.raises(BlockedAddress, match=refusal):
            await run({"url": f"{http_server.base_url}/redirect?to={quote(target, safe='')}"})
    assert internal_server.requests == []
    # Listed, the same redirect is followed.
    widened = NetworkPolicy(allowlist=("127.0.0.1/32", "127.0.0.2/32"))
    assert (await run({"url": url}, widened))["body"]["path"] == "/echo"
    assert len(internal_server.requests_to("/echo")) == 1


# -- pagination ------------------------------------------------------------------------------


async def test_pages_from_a_json_path_are_concatenated_with_progress(
    http_server: LocalServer,
) -> None:
    call = Call(LOCAL, Vault(Credential("api", "query", {"name": "key", "value": TOKEN})))
    output = await call(
        {
            "url": f"{http_server.base_url}/paged?pages=3",
            "credential": "api",
            "paginate": {"next": "$.next", "items": "$.data"},
        }
    )
    assert output["items"] == [100, 101, 200, 201, 300, 301]
    assert (output["pages"], output["more"], output["status"]) == (3, False, 200)
    requests = http_server.requests_to("/paged")
    assert [r.query.get("page") for r in requests] == [None, "2", "3"]
    assert {r.query["key"] for r in requests} == {TOKEN}
    assert len({r.idempotency_key for r in requests}) == 1
    assert [data for kind, data in call.live if kind == "step.progress"] == [
        {"node_id": "call", "attempt": 1, "done": n, "message": f"page {n}"} for n in (1, 2, 3)
    ]
    assert call.ctx.usage.api_calls == 3


async def test_pages_from_the_link_header_stop_at_max_pages(http_server: LocalServer) -> None:
    output = await run(
        {
            "url": f"{http_server.base_url}/paged?pages=5&style=link&per=1",
            "paginate": {"next": "link", "max_pages": 2},
        }
    )
    assert (output["items"], output["pages"], output["more"]) == ([100, 200], 2, True)
    assert len(http_server.requests_to("/paged")) == 2


async def test_each_page_is_a_checked_request(
    http_server: LocalServer, internal_server: LocalServer
) -> None:
    url = f"{http_server.base_url}/paged?pages=3&base={quote(internal_server.base_url)}"
    with pytest.raises(BlockedAddress, match=r"127\.0\.0\.2.*not in the outbound allowlist"):
        await run({"url": url, "paginate": {"next": "body.next", "items": "data"}})
    assert len(http_server.requests_to("/paged")) == 1
    assert internal_server.requests == []


async def test_a_page_without_a_list_is_an_error_naming_the_setting(
    http_server: LocalServer,
) -> None:
    with pytest.raises(NodeError, match=r"the body is not a list; set paginate\.items") as caught:
        await run({"url": f"{http_server.base_url}/paged", "paginate": {"next": "$.next"}})
    assert caught.value.non_retryable


def test_pagination_is_for_get_only() -> None:
    with pytest.raises(ValueError, match="'paginate' works with method GET only"):
        HttpRequestConfig.model_validate(
            {"url": "https://x.example", "method": "POST", "paginate": {"next": "link"}}
        )


# -- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("declare", ["1", "0"])
async def test_a_body_over_max_response_bytes_fails_without_retrying(
    http_server: LocalServer, declare: str
) -> None:
    url = f"{http_server.base_url}/big?declare={declare}"
    assert (await run({"url": f"{url}&bytes=1000", "max_response_bytes": 1000}))["body"] == (
        "x" * 1000
    )
    with pytest.raises(NodeError, match=r"over max_response_bytes \(1000 bytes\)") as caught:
        await run({"url": f"{url}&bytes=200000", "max_response_bytes": 1000})
    assert caught.value.non_retryable


async def test_a_head_answer_declaring_a_large_body_is_fine(http_server: LocalServer) -> None:
    url = f"{http_server.base_url}/big?bytes=200000"
    output = await run({"url": url, "method": "HEAD", "max_response_bytes": 1000})
    assert (output["status"], output["body"]) == (200, "")
    assert output["headers"]["content-length"] == "200000"


async def test_a_binary_body_is_returned_as_a_file(http_server: LocalServer) -> None:
    output = await run({"url": f"{http_server.base_url}/binary?bytes=300&type=image/png"})
    data = bytes(i % 256 for i in range(300))
    assert output["body"] is None
    assert output["file"] == {
        "content_type": "image/png",
        "size": 300,
        "sha256": hashlib.sha256(data).hexdigest(),
        "base64": base64.b64encode(data).decode(),
    }
    with pytest.raises(NodeError, match=r"over max_file_bytes \(299 bytes\)"):
        await run({"url": f"{http_server.base_url}/binary?bytes=300", "max_file_bytes": 299})


# -- failures --------------------------------------------------------------------------------


async def test_a_request_over_its_timeout_fails_retryably(http_server: LocalServer) -> None:
    began = time.monotonic()
    with pytest.raises(NodeError, match=r"GET http://127\.0\.0\.1:\d+/slow\?seconds=30 timed out"):
        await run({"url": f"{http_server.base_url}/slow?seconds=30", "timeout": "300ms"})
    assert time.monotonic() - began < QUICK


@pytest.mark.parametrize(
    ("query", "retryable", "delay"),
    [
        ("code=429&retry_after=3", True, timedelta(seconds=3)),
        ("code=503&retry_after=4&form=date", True, timedelta(seconds=4)),
        ("code=500", True, None),
        ("code=404", False, None),
    ],
)
async def test_an_unexpected_status_carries_retry_after(
    http_server: LocalServer, query: str, retryable: bool, delay: timedelta | None
) -> None:
    with pytest.raises(HttpStatusError) as caught:
        await run({"url": f"{http_server.base_url}/status?{query}"})
    assert caught.value.non_retryable is not retryable
    assert caught.value.retry_after == delay
    assert caught.value.details["body"]["calls"] == 1


async def test_errors_name_the_url_without_a_query_credential(http_server: LocalServer) -> None:
    query = Credential("api", "query", {"name": "api_key", "value": TOKEN})
    with pytest.raises(HttpStatusError) as caught:
        await run(
            {"url": f"{http_server.base_url}/status?code=404", "credential": "api"}, LOCAL, query
        )
    assert str(caught.value) == f"GET {http_server.base_url}/status?code=404 answered 404"
    with pytest.raises(NodeError) as too_large:
        await run(
            {
                "url": f"{http_server.base_url}/big?bytes=50",
                "credential": "api",
                "max_response_bytes": 10,
            },
            LOCAL,
            query,
        )
    assert TOKEN not in str(too_large.value)
    assert http_server.requests_to("/big")[0].query["api_key"] == TOKEN
