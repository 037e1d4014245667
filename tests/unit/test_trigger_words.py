"""The Triggers tab's words: a schedule's timing (the usual cron shapes named, anything else
shown as written), fire times on the schedule's own wall clock, and a webhook's auth mode
with the way the tab offers to send it a test request."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.web.schedule_words import cron_words, schedule_words, wall_clock
from conveyor.web.webhook_words import auth_words, sending_mode, signed_snippet, webhook_view


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("*/1 * * * *", "every minute"),
        ("7 * * * *", "every hour at minute 7"),
        ("0 */2 * * *", "every 2 hours at minute 0"),
        ("30 9 * * *", "every day at 09:30"),
        ("0 9 * * 1-5", "at 09:00 on Monday to Friday"),
        ("0 9 * * 1,3,5", "at 09:00 on Monday, Wednesday and Friday"),
        ("0 18 * * sat,SUN", "at 18:00 on Saturday and Sunday"),
        ("0 0 * * 7", "at 00:00 on Sunday"),
        ("0 0 1 * *", "at 00:00 on day 1 of every month"),
        ("*/10 * * * * *", "every 10 seconds"),
        ("15 30 9 * * *", "every day at 09:30:15"),
        # Shapes without words are shown exactly as written.
        ("0 9 * 6 *", "cron 0 9 * 6 *"),
        ("0 9 1 * 1", "cron 0 9 1 * 1"),
        ("0 9-17 * * *", "cron 0 9-17 * * *"),
        ("5 * * * * *", "cron 5 * * * * *"),
        ("0 9 * * 1#2", "cron 0 9 * * 1#2"),
    ],
)
def test_cron_in_words(expression: str, words: str) -> None:
    assert cron_words(expression) == words


def test_a_schedule_says_its_zone_and_an_interval_does_not() -> None:
    nightly = {"cron": "0 2 * * *", "timezone": "Europe/Paris"}
    assert schedule_words(nightly) == "every day at 02:00, Europe/Paris time"
    assert schedule_words({"cron": "0 2 * * *"}) == "every day at 02:00, UTC time"
    # Intervals follow elapsed time: no zone changes when they fire.
    assert schedule_words({"every": "90s", "timezone": "Europe/Paris"}) == (
        "every 1 minute 30 seconds"
    )
    assert schedule_words({"every": "1h"}) == "every hour"
    assert schedule_words({"every": 172800}) == "every 2 days"


def test_fire_times_read_on_the_schedules_wall_clock() -> None:
    # 07:00 UTC is 09:00 in Paris in summer, 08:00 in winter; 09:00 in New York is 13:00 UTC.
    assert wall_clock(datetime(2031, 6, 2, 7, 0, tzinfo=UTC), "Europe/Paris") == "Mon 2 Jun 09:00"
    assert wall_clock(datetime(2031, 1, 6, 7, 0, tzinfo=UTC), "Europe/Paris") == "Mon 6 Jan 08:00"
    assert wall_clock(datetime(2026, 3, 9, 13, 0, tzinfo=UTC), "America/New_York") == (
        "Mon 9 Mar 09:00"
    )


def test_auth_modes_in_words_and_how_a_test_request_is_sent() -> None:
    assert auth_words({"mode": "none"}) == "None (no authentication)"
    assert auth_words({"mode": "header", "header": "X-Token"}) == (
        "Secret token in the X-Token header"
    )
    assert auth_words({"mode": "basic", "username": "shop"}) == "HTTP basic, user shop"
    assert auth_words({}) == (
        "Signature: Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)"
    )
    generic = {
        "mode": "signature",
        "scheme": "hmac",
        "hmac": {"header": "X-Sig", "parts": ["timestamp", "body"]},
    }
    assert auth_words(generic) == "Signature: HMAC in X-Sig, sha256 hex of timestamp + body"
    assert [sending_mode({"mode": m}) for m in ("none", "header", "basic", "signature")] == [
        "direct",
        "secret",
        "secret",
        "snippet",
    ]
    # A generic HMAC over more than the body has no ready-made command.
    assert signed_snippet("http://x/hooks/t", "POST", generic) is None


def test_a_webhook_view_prefers_post_for_the_test_request() -> None:
    view = webhook_view({"methods": ["GET", "POST"], "auth": {"mode": "none"}}, "http://x/hooks/t")
    assert view["test_method"] == "POST" and view["snippet"] is None
    signed = webhook_view({"methods": ["PUT"], "auth": {"scheme": "github"}}, "http://x/hooks/t")
    assert signed["test_method"] == "PUT" and signed["response_mode"] == "async"
    assert "curl -i -X PUT http://x/hooks/t" in signed["snippet"]
    assert "X-Hub-Signature-256: sha256=$SIG" in signed["snippet"]
