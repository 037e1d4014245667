"""What ``chat.post`` sends to each chat service: pure functions from its config to a JSON
payload, in each service's own format."""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.nodes.chat import ChatPostConfig

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
_MARKDOWN_V2 = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")
_MARKDOWN = re.compile(r"([_*`\[])")


def payload(config: ChatPostConfig) -> dict[str, Any]:
    builders = {
        "slack": slack,
        "mattermost": mattermost,
        "discord": discord,
        "teams": teams,
        "telegram": telegram,
    }
    return builders[config.service](config)


def _titled(title: str | None, text: str, bold: str) -> str:
    """The title as a bold first line (``bold`` is the markup around it), then the text."""
    if not title:
        return text
    line = f"{bold}{title}{bold}"
    return f"{line}\n{text}" if text else line


def slack(config: ChatPostConfig) -> dict[str, Any]:
    body: dict[str, Any] = {"text": _titled(config.title, config.text, "*")}
    if config.blocks is not None:
        body["blocks"] = config.blocks
    return body


def mattermost(config: ChatPostConfig) -> dict[str, Any]:
    body: dict[str, Any] = {"text": _titled(config.title, config.text, "**")}
    if config.username:
        body["username"] = config.username
    if config.props is not None:
        body["props"] = config.props
    return body


def discord(config: ChatPostConfig) -> dict[str, Any]:
    body: dict[str, Any] = {"content": _titled(config.title, config.text, "**")}
    if config.username:
        body["username"] = config.username
    if config.embeds is not None:
        body["embeds"] = config.embeds
    return body


def teams(config: ChatPostConfig) -> dict[str, Any]:
    """A legacy connector's MessageCard is sent as it is; anything else is an Adaptive Card,
    given or made from title and text, in a ``message`` with one attachment."""
    card = config.card
    if card is not None and card.get("@type") == "MessageCard":
        return card
    if card is None:
        blocks: list[dict[str, Any]] = []
        if config.title:
            blocks.append(
                {
                    "type": "TextBlock",
                    "text": config.title,
                    "weight": "Bolder",
                    "size": "Medium",
                    "wrap": True,
                }
            )
        if config.text:
            blocks.append({"type": "TextBlock", "text": config.text, "wrap": True})
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": blocks,
        }
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }


def telegram(config: ChatPostConfig) -> dict[str, Any]:
    text = config.text
    if config.title:
        text = f"{_telegram_bold(config.title, config.parse_mode)}\n{text}".rstrip("\n")
    body: dict[str, Any] = {"chat_id": config.chat_id, "text": text}
    if config.parse_mode:
        body["parse_mode"] = config.parse_mode
    return body


def _telegram_bold(title: str, parse_mode: str | None) -> str:
    """The title in bold, escaped for the parse mode so Telegram accepts the message."""
    if parse_mode == "HTML":
        return f"<b>{html.escape(title)}</b>"
    escape = {"MarkdownV2": _MARKDOWN_V2, "Markdown": _MARKDOWN}.get(parse_mode or "")
    if escape is not None:
        return "*" + escape.sub(r"\\\1", title) + "*"
    return title
