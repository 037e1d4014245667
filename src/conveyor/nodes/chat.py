"""The ``chat.post`` node type: a message to a Slack, Mattermost, Discord or Microsoft
Teams incoming webhook, or through Telegram's Bot API.

The secret (the webhook URL, or Telegram's bot token) is the ``token`` of a ``bearer``
credential: a webhook URL is a bearer secret, whoever holds it may post. It never appears
in the step's output, error or log lines.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.durations import Duration
from conveyor.errors import HttpStatusError, NodeError
from conveyor.nodes.base import NodeContext, NodeType
from conveyor.nodes.chat_payloads import payload

if TYPE_CHECKING:
    import httpx

Service = Literal["slack", "mattermost", "discord", "teams", "telegram"]
WEBHOOK_SERVICES = ("slack", "mattermost", "discord", "teams")

# Fields that mean something to one service only; given with another, they are an error.
_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "blocks": ("slack",),
    "props": ("mattermost",),
    "username": ("mattermost", "discord"),
    "embeds": ("discord",),
    "card": ("teams",),
    "chat_id": ("telegram",),
    "parse_mode": ("telegram",),
    "api_base": ("telegram",),
}


class ChatPostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: Service = Field(json_schema_extra={"x-template": False})
    credential: str = Field(
        min_length=1,
        description="name of a bearer credential whose token is the webhook URL "
        "(slack, mattermost, discord, teams) or the bot token (telegram)",
        json_schema_extra={"x-template": False},
    )
    text: str = Field(default="", description="the message (each service's own markup)")
    title: str | None = Field(default=None, description="shown in bold above the text")
    username: str | None = Field(default=None, description="mattermost, discord: the poster")
    blocks: list[dict[str, Any]] | None = Field(default=None, description="slack: Block Kit")
    props: dict[str, Any] | None = Field(default=None, description="mattermost: props")
    embeds: list[dict[str, Any]] | None = Field(default=None, description="discord: embeds")
    card: dict[str, Any] | None = Field(
        default=None, description="teams: an Adaptive Card, or a legacy MessageCard"
    )
    chat_id: int | str | None = Field(default=None, description="telegram: the chat to post in")
    parse_mode: Literal["HTML", "Markdown", "MarkdownV2"] | None = Field(
        default=None, description="telegram: how the text is formatted"
    )
    api_base: str = Field(
        default="https://api.telegram.org",
        pattern=r"^https?://",
        description="telegram: the Bot API server (a self-hosted one)",
    )
    timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _fits_service(self) -> ChatPostConfig:
        for name, services in _ONLY_FOR.items():
            if name in self.model_fields_set and self.service not in services:
                raise ValueError(f"'{name}' is for {' and '.join(services)} only")
        rich = self.blocks or self.props or self.embeds or self.card
        if not (self.text or self.title or rich):
            raise ValueError("give 'text' (or 'title', or the service's rich content)")
        if self.service == "teams" and self.card is not None and (self.text or self.title):
            raise ValueError("with 'card', teams shows the card only: leave out text and title")
        if self.service == "telegram" and self.chat_id in (None, ""):
            raise ValueError("telegram needs 'chat_id'")
        return self


class ChatPost(NodeType):
    name = "chat.post"
    title = "Post to chat"
    category = "messaging"
    icon = "chat"
    description = (
        "Post a message to a Slack, Mattermost, Discord or Microsoft Teams incoming webhook, "
        "or through Telegram's Bot API."
    )
    config_model = ChatPostConfig
    example = {
        "id": "announce",
        "type": "chat.post",
        "config": {
            "service": "slack",
            "credential": "team-slack",
            "title": "Deploy finished",
            "text": "{{ input.service }} is live",
        },
    }

    async def run(self, ctx: NodeContext, config: ChatPostConfig) -> Any:
        credential = await ctx.credential(config.credential, "bearer")
        secret = str(credential.data.get("token") or "")
        url = _target(config, secret, credential.name)
        response = await _post(ctx, config, url, secret)
        ctx.report_usage(api_calls=1)
        ctx.log.info(f"{config.service}: posted, HTTP {response.status_code}")
        _check(config, response, secret, ctx.now())
        return {
            "service": config.service,
            "status": response.status_code,
            "message_id": _message_id(config, response),
        }


def _target(config: ChatPostConfig, secret: str, credential: str) -> str:
    if config.service == "telegram":
        if not secret or "/" in secret:
            raise NodeError(
                f"credential '{credential}': its token should be the bot token",
                non_retryable=True,
            )
        return f"{config.api_base.rstrip('/')}/bot{secret}/sendMessage"
    if not secret.startswith(("https://", "http://")):
        raise NodeError(
            f"credential '{credential}': its token should be the {config.service} webhook URL",
            non_retryable=True,
        )
    if config.service == "discord":
        # wait=true: Discord answers with the message it created (its id), not 204.
        separator = "&" if "?" in secret else "?"
        return f"{secret}{separator}wait=true"
    return secret


async def _post(ctx: NodeContext, config: ChatPostConfig, url: str, secret: str) -> httpx.Response:
    import httpx

    from conveyor.nodes.outbound import make_client

    async with make_client(policy=ctx.network, timeout=config.timeout.total_seconds()) as client:
        try:
            return await client.post(url, json=payload(config))
        except httpx.TimeoutException as exc:
            raise NodeError(f"{config.service}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            reason = _scrub(str(exc) or type(exc).__name__, secret)
            raise NodeError(f"{config.service}: the request failed: {reason}") from None


def _check(config: ChatPostConfig, response: httpx.Response, secret: str, now: datetime) -> None:
    status = response.status_code
    body = _body(response)
    if 200 <= status < 300 and not (isinstance(body, dict) and body.get("ok") is False):
        return
    retryable = status >= 500 or status in (408, 425, 429)
    detail = _scrub(_describe(body), secret)
    raise HttpStatusError(
        f"{config.service} answered {status}: {detail}"[:500],
        non_retryable=not retryable,
        retry_after=retry_after(response, body, now),
        details={"status": status, "body": detail},
    )


def _body(response: httpx.Response) -> Any:
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            pass
    return response.text


def _describe(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("description", "message", "error"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return str(body)[:300]


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def retry_after(response: httpx.Response, body: Any, now: datetime) -> timedelta | None:
    """Retry-After (seconds or an HTTP date), else the JSON ``retry_after`` that Discord
    (seconds, top level) and Telegram (``parameters.retry_after``) send."""
    value = response.headers.get("retry-after", "").strip()
    if value.replace(".", "", 1).isdigit():
        return timedelta(seconds=float(value))
    if value:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(when - now, timedelta(0))
    if isinstance(body, dict):
        parameters = body.get("parameters")
        found = parameters.get("retry_after") if isinstance(parameters, dict) else None
        found = body.get("retry_after", found)
        if isinstance(found, int | float) and not isinstance(found, bool):
            return timedelta(seconds=float(found))
    return None


def _message_id(config: ChatPostConfig, response: httpx.Response) -> str | None:
    body = _body(response)
    if not isinstance(body, dict):
        return None
    if config.service == "telegram":
        result = body.get("result")
        found = result.get("message_id") if isinstance(result, dict) else None
    else:
        found = body.get("id")
    return None if found is None else str(found)
