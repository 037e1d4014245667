"""A schedule's timing in words ("every day at 09:00, Europe/Paris time"), for the Triggers
tab. Pure: the common cron shapes are named; anything else is shown as the expression
itself, which is always exact."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta
from typing import Any

from conveyor.durations import parse_duration

DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
DAY_NAMES = {d[:3].lower(): i for i, d in enumerate(DAYS)}


def plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def interval_words(every: timedelta) -> str:
    """``every 90 seconds`` reads better as ``every 1 minute 30 seconds``."""
    total = int(every.total_seconds())
    if total <= 0:
        return f"every {every.total_seconds() * 1000:.0f} ms"
    parts = []
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        count, total = divmod(total, size)
        if count:
            parts.append(plural(count, unit))
    if len(parts) == 1 and parts[0].startswith("1 "):
        return "every " + parts[0][2:]  # "every hour", not "every 1 hour"
    return "every " + " ".join(parts)


def _number(field: str) -> int | None:
    return int(field) if field.isdigit() else None


def _step(field: str) -> int | None:
    """N for ``*/N``."""
    if field.startswith("*/") and field[2:].isdigit():
        return int(field[2:])
    return None


def _weekday(token: str) -> int | None:
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    return DAY_NAMES.get(token.lower())


def days_words(field: str) -> str | None:
    """``1-5`` as ``Monday to Friday``, ``1,3`` as ``Monday and Wednesday``."""
    named = []
    for part in field.split(","):
        ends = part.split("-")
        found = [_weekday(e) for e in ends]
        if len(ends) > 2 or None in found:
            return None
        named.append(" to ".join(DAYS[d] for d in found if d is not None))
    if len(named) == 1:
        return named[0]
    return ", ".join(named[:-1]) + " and " + named[-1]


def _clock(hour: int, minute: int, second: int | None) -> str:
    return f"{hour:02d}:{minute:02d}" + (f":{second:02d}" if second else "")


def _dated(fields: list[str], at: str) -> str | None:
    """``at`` (a time of day) on the days the last three fields allow, or None."""
    dom, month, dow = fields
    if month != "*":
        return None
    if dom == "*" and dow == "*":
        return f"every day at {at}"
    if dom == "*":
        days = days_words(dow)
        return f"at {at} on {days}" if days else None
    day = _number(dom)
    if day is not None and dow == "*":
        return f"at {at} on day {day} of every month"
    return None


def cron_words(expression: str) -> str:
    """Words for the usual shapes; otherwise ``cron <expression>``."""
    fields = expression.split()
    second: int | None = None
    if len(fields) == 6:
        if fields[1:] == ["*"] * 5:
            step = _step(fields[0])
            if step is not None:
                return interval_words(timedelta(seconds=step))
            if fields[0] == "*":
                return "every second"
        second = _number(fields[0])
        fields = fields[1:] if second is not None else []
    found = _cron5(fields, second) if len(fields) == 5 else None
    return found or f"cron {expression}"


def _cron5(fields: list[str], second: int | None) -> str | None:
    minute, hour, rest = fields[0], fields[1], fields[2:]
    if rest == ["*", "*", "*"] and hour == "*":
        if minute == "*" and not second:
            return "every minute"
        step = _step(minute)
        if step is not None and not second:
            return interval_words(timedelta(minutes=step))
        at = _number(minute)
        if at is not None:
            return f"every hour at minute {at}" if not second else None
    m, h = _number(minute), _number(hour)
    if m is not None and rest == ["*", "*", "*"] and _step(hour) is not None:
        return f"every {plural(_step(hour) or 1, 'hour')} at minute {m}"
    if m is None or h is None:
        return None
    return _dated(rest, _clock(h, m, second))


def schedule_words(spec: dict[str, Any]) -> str:
    """The whole timing: cron or interval, with the time zone when it matters."""
    if spec.get("every") is not None:
        # Intervals follow elapsed time: the zone does not change when they fire.
        return interval_words(parse_duration(spec["every"]))
    words = cron_words(str(spec.get("cron", "")))
    zone = spec.get("timezone") or "UTC"
    return f"{words}, {zone} time"


def wall_clock(moment: datetime, zone: str) -> str:
    """A fire time as the schedule's zone reads it (``Mon 2 Jun 09:00``): what a cron
    expression is written in, whatever zone the person looking is in."""
    local = moment.astimezone(zoneinfo.ZoneInfo(zone))
    return f"{DAYS[(local.weekday() + 1) % 7][:3]} {local.day} {local:%b %H:%M}"
