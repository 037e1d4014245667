"""``chat.post`` against a real local HTTP server standing in for each chat service: the exact
payload each one receives, which answers retry, and that the secret stays out of sight."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import pytest

from conveyor.errors import BlockedAddress, HttpStatusError, NodeError
from conveyor.nodes.base import NetworkPolicy
from conveyor.nodes.chat import ChatPost
from tests.integration.chatserver import ChatServer, Reply
from tests.integration.nodecontext import Vault, context, run

TOKEN = "123456:AAbbCCddEEffGGhh-secret"  # a Telegram bot token's shape
HOOK_PATHS = {
    "slack": "/services/T0001/B0002/slacksecret0123",
    "mattermost": "/hooks/mattermostsecret0123",
    "discord": "/api/webhooks/42/discordsecret0123",
    "teams": "/webhookb2/teamssecret0123",
}


async def post(server: ChatServer, config: dict[str, Any], **ctx: Any) -> Any:
    service = config["service"]
    if service == "telegram":
        secret = TOKEN
        config = {"api_base": server.base_url, **config}
    else:
        secret = server.base_url + HOOK_PATHS[service]
    vault = Vault(chat=("bearer", {"token": secret}))
    return await run(ChatPost(), context(vault, **ctx), {"credential": "chat", **config})


CARD = {
    "type": "AdaptiveCard",
    "version": "1.5",
    "body": [{"type": "TextBlock", "text": "from a card"}],
}
MESSAGE_CARD = {"@type": "MessageCard", "@context": "https://schema.org/extensions", "text": "x"}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"service": "slack", "title": "Deploy", "text": "v2 is live"},
            {"text": "*Deploy*\nv2 is live"},
        ),
        (
            {"service": "slack", "text": "fallback", "blocks": [{"type": "divider"}]},
            {"text": "fallback", "blocks": [{"type": "divider"}]},
        ),
        (
            {
                "service": "mattermost",
                "title": "Deploy",
                "text": "v2",
                "username": "conveyor",
                "props": {"card": "details"},
            },
            {"text": "**Deploy**\nv2", "username": "conveyor", "props": {"card": "details"}},
        ),
        (
            {"service": "discord", "text": "v2", "embeds": [{"title": "Deploy"}]},
            {"content": "v2", "embeds": [{"title": "Deploy"}]},
        ),
        (
            {"service": "teams", "title": "Deploy", "text": "v2 is live"},
            {
                "type": "message",
                "attachments": [
                    {
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": None,
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "body": [
                                {
                                    "type": "TextBlock",
                                    "text": "Deploy",
                                    "weight": "Bolder",
                                    "size": "Medium",
                                    "wrap": True,
                                },
                                {"type": "TextBlock", "text": "v2 is live", "wrap": True},
                            ],
                        },
                    }
                ],
            },
        ),
        (
            {"service": "teams", "card": CARD},
            {
                "type": "message",
                "attachments": [
                    {
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "contentUrl": None,
                        "content": CARD,
                    }
                ],
            },
        ),
        ({"service": "teams", "card": MESSAGE_CARD}, MESSAGE_CARD),
    ],
    ids=["slack", "slack-blocks", "mattermost", "discord", "teams", "teams-card", "messagecard"],
)
async def test_each_webhook_receives_its_own_payload_format(
    chat_server: ChatServer, config: dict[str, Any], expected: dict[str, Any]
) -> None:
    output = await post(chat_server, config)
    (posted,) = chat_server.posted()
    assert posted.path == HOOK_PATHS[config["service"]]
    assert posted.json == expected
    assert posted.headers["Content-Type"] == "application/json"
    assert output == {"service": config["service"], "status": 200, "message_id": None}


async def test_discord_waits_for_the_message_and_returns_its_id(chat_server: ChatServer) -> None:
    path = HOOK_PATHS["discord"]
    chat_server.script(path, Reply(200, {"id": "1180000000000000001", "content": "hi"}))
    output = await post(chat_server, {"service": "discord", "text": "hi", "username": "bot"})
    (posted,) = chat_server.posted(path)
    assert posted.query == {"wait": "true"}
    assert posted.json == {"content": "hi", "username": "bot"}
    assert output["message_id"] == "1180000000000000001"


async def test_telegram_bot_api_send_message(chat_server: ChatServer) -> None:
    path = f"/bot{TOKEN}/sendMessage"
    result = {"message_id": 77, "chat": {"id": -100123}, "text": "Deploy v2.0"}
    chat_server.script(path, Reply(200, {"ok": True, "result": result}))
    output = await post(
        chat_server,
        {
            "service": "telegram",
            "chat_id": -100123,
            "title": "Deploy v2.0!",
            "text": "is *live*",
            "parse_mode": "MarkdownV2",
        },
    )
    (posted,) = chat_server.posted(path)
    assert posted.json == {
        "chat_id": -100123,
        "text": "*Deploy v2\\.0\\!*\nis *live*",
        "parse_mode": "MarkdownV2",
    }
    assert output == {"service": "telegram", "status": 200, "message_id": "77"}
    assert TOKEN not in repr(output)


async def test_telegram_html_title_is_escaped(chat_server: ChatServer) -> None:
    await post(
        chat_server,
        {
            "service": "telegram",
            "chat_id": "@ops",
            "title": "a<b",
            "text": "x",
            "parse_mode": "HTML",
        },
    )
    (posted,) = chat_server.posted()
    assert posted.json == {"chat_id": "@ops", "text": "<b>a&lt;b</b>\nx", "parse_mode": "HTML"}


async def test_429_is_retryable_after_the_time_it_asks(chat_server: ChatServer) -> None:
    chat_server.script(HOOK_PATHS["slack"], Reply(429, "rate_limited", {"Retry-After": "7"}))
    with pytest.raises(HttpStatusError, match="slack answered 429: rate_limited") as limited:
        await post(chat_server, {"service": "slack", "text": "hi"})
    assert not limited.value.non_retryable
    assert limited.value.retry_after == timedelta(seconds=7)


async def test_telegram_429_retry_after_from_its_json(chat_server: ChatServer) -> None:
    body = {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    chat_server.script(f"/bot{TOKEN}/sendMessage", Reply(429, body))
    with pytest.raises(HttpStatusError, match="Too Many Requests") as limited:
        await post(chat_server, {"service": "telegram", "chat_id": 1, "text": "hi"})
    assert not limited.value.non_retryable
    assert limited.value.retry_after == timedelta(seconds=3)
    assert TOKEN not in str(limited.value) and TOKEN not in repr(limited.value.details)


@pytest.mark.parametrize(
    ("service", "reply", "retryable"),
    [
        ("slack", Reply(404, "no_service"), False),
        ("mattermost", Reply(403, {"message": "webhook disabled"}), False),
        ("discord", Reply(400, {"message": "Cannot send an empty message", "code": 50006}), False),
        ("teams", Reply(503, "unavailable"), True),
    ],
)
async def test_client_errors_are_final_server_errors_retry(
    chat_server: ChatServer, service: str, reply: Reply, retryable: bool
) -> None:
    chat_server.script(HOOK_PATHS[service], reply)
    with pytest.raises(HttpStatusError, match=f"{service} answered {reply.status}") as failed:
        await post(chat_server, {"service": service, "text": "hi"})
    assert failed.value.non_retryable is not retryable
    assert failed.value.details["status"] == reply.status
    assert HOOK_PATHS[service] not in str(failed.value) + repr(failed.value.details)


async def test_telegram_ok_false_is_a_failure(chat_server: ChatServer) -> None:
    body = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    chat_server.script(f"/bot{TOKEN}/sendMessage", Reply(400, body))
    with pytest.raises(HttpStatusError, match="chat not found") as failed:
        await post(chat_server, {"service": "telegram", "chat_id": 5, "text": "hi"})
    assert failed.value.non_retryable


async def test_the_secret_is_never_in_output_errors_or_logs(chat_server: ChatServer) -> None:
    vault = Vault(chat=("bearer", {"token": chat_server.base_url + HOOK_PATHS["slack"]}))
    ctx = context(vault)
    output = await run(ChatPost(), ctx, {"service": "slack", "credential": "chat", "text": "hi"})
    assert ctx.log.lines and all("slacksecret" not in line["message"] for line in ctx.log.lines)
    assert "slacksecret" not in repr(output)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = Vault(chat=("bearer", {"token": f"http://127.0.0.1:{port}/hooks/closedsecret"}))
    with pytest.raises(NodeError, match="the request failed") as failed:
        await run(
            ChatPost(), context(closed), {"service": "slack", "credential": "chat", "text": "x"}
        )
    assert not failed.value.non_retryable
    assert "closedsecret" not in str(failed.value)


async def test_the_outbound_guard_applies(chat_server: ChatServer) -> None:
    with pytest.raises(BlockedAddress, match="loopback"):
        await post(
            chat_server,
            {"service": "slack", "text": "hi"},
            network=NetworkPolicy(allow_private=False),
        )
    assert chat_server.posted() == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"service": "slack", "text": "x", "embeds": []}, "'embeds' is for discord only"),
        ({"service": "discord", "text": "x", "chat_id": 1}, "'chat_id' is for telegram only"),
        ({"service": "telegram", "text": "x"}, "telegram needs 'chat_id'"),
        ({"service": "slack"}, "give 'text'"),
        ({"service": "teams", "text": "x", "card": CARD}, "shows the card only"),
        ({"service": "irc", "text": "x"}, "config.service"),
    ],
)
async def test_config_fits_the_service(
    chat_server: ChatServer, config: dict[str, Any], message: str
) -> None:
    vault = Vault(chat=("bearer", {"token": chat_server.base_url + "/hook"}))
    with pytest.raises(NodeError, match=message) as failed:
        await run(ChatPost(), context(vault), {"credential": "chat", **config})
    assert failed.value.non_retryable
    assert chat_server.posted() == []


async def test_a_webhook_credential_must_hold_a_url(chat_server: ChatServer) -> None:
    vault = Vault(chat=("bearer", {"token": "not-a-url-at-all"}))
    with pytest.raises(NodeError, match="should be the slack webhook URL") as failed:
        await run(
            ChatPost(), context(vault), {"credential": "chat", "service": "slack", "text": "x"}
        )
    assert failed.value.non_retryable
    assert "not-a-url-at-all" not in str(failed.value)
