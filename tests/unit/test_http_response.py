"""Pure parts of the http.request node: Retry-After in both forms, the JSON paths of
pagination, and which content types are text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from conveyor.nodes.http_response import is_text, json_path, retry_after

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({"Retry-After": "7"}, timedelta(seconds=7)),
        ({"Retry-After": "0.5"}, timedelta(seconds=0.5)),
        ({"Retry-After": " 120 "}, timedelta(seconds=120)),
        # An HTTP-date is taken relative to the response's own Date, not our clock.
        (
            {
                "Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT",
                "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
            },
            timedelta(seconds=30),
        ),
        ({"Retry-After": "Thu, 01 Jan 2026 12:01:00 GMT"}, timedelta(seconds=60)),
        ({"Retry-After": "Thu, 01 Jan 2026 11:00:00 GMT"}, timedelta(0)),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-3"}, None),
        ({}, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    headers: dict[str, str], delay: timedelta | None
) -> None:
    assert retry_after(httpx.Headers(headers), NOW) == delay


BODY = {"data": {"items": [{"id": 1}, {"id": 2}]}, "next": "/p?page=2", "links": {"next": None}}


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("$.next", "/p?page=2"),
        ("body.next", "/p?page=2"),
        ("next", "/p?page=2"),
        ("$.data.items", [{"id": 1}, {"id": 2}]),
        ("$.data.items[1].id", 2),
        ("data.items[5]", None),
        ("$.links.next", None),
        ("$.missing.deeper", None),
        ("$", BODY),
        ("body", BODY),
    ],
)
def test_json_paths_find_values_or_none(path: str, found: object) -> None:
    assert json_path(BODY, path) == found


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("application/json; charset=utf-8", True),
        ("application/problem+json", True),
        ("text/html", True),
        ("application/xml", True),
        ("image/svg+xml", True),
        ("text/csv", True),
        ("application/octet-stream", False),
        ("image/png", False),
        ("application/pdf", False),
        ("", None),
    ],
)
def test_text_content_types(content_type: str, text: bool | None) -> None:
    assert is_text(content_type) is text
