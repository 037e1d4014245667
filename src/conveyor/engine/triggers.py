"""Triggers as a definition declares them (``triggers:``): schedules and webhooks.

Each has an ``id`` unique within its workflow: saving a new version compares triggers by
``id`` (see ``store/triggers.py``), so an unchanged one keeps its identity, history, next
fire time and webhook URL.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conveyor.durations import Duration

TRIGGER_ID = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
OverlapPolicy = Literal["skip", "buffer_one", "buffer_all", "cancel_previous", "allow"]
CatchupPolicy = Literal["skip", "latest", "all"]
MAX_SYNC_WAIT = timedelta(minutes=5)
# Whether an expression ever fires is asked from here: its every date recurs within 28 years
# (the calendar's cycle), well inside croniter's search horizon.
_FIRES_FROM = datetime(2000, 1, 1)  # noqa: DTZ001 (cron fields are naive wall-clock times)
# Names that ZoneInfo reads but whose meaning is the server's own setting.
_LOCAL_ZONES = frozenset({"localtime", "posixrules"})
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")


def normalize_cron(expression: str) -> str:
    """The expression with aliases expanded and whitespace collapsed; ValueError when it is
    not 5 fields (minute first) or 6 fields (second first)."""
    text = " ".join(expression.split())
    text = CRON_ALIASES.get(text.lower(), text)
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ValueError(
            f"'{expression}' is not a cron expression: use 5 fields (minute hour day month "
            "weekday), 6 fields (second first) or an alias such as @hourly"
        )
    from croniter import croniter  # with dateutil: only where cron expressions are read

    if not croniter.is_valid(text, second_at_beginning=len(fields) == 6):
        raise ValueError(f"'{expression}' is not a valid cron expression")
    return text


def check_timezone(name: str) -> str:
    """An IANA zone name, or ValueError (never a silent fallback to UTC)."""
    if not name or "\\" in name or name.startswith("/") or ".." in name:
        raise ValueError(f"'{name}' is not an IANA time zone")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone '{name}' (use an IANA name such as 'Europe/Paris' or 'UTC')"
        ) from None
    return name


def schedule_problems(spec: ScheduleSpec) -> list[tuple[str, str]]:
    """What makes a schedule useless, as (field, message), checked when one is saved (not
    in the model: a stored schedule is read with it, and must stay readable): a cron
    expression that no date matches, or a zone that means the server's own setting."""
    problems = []
    if spec.cron is not None:
        from croniter import CroniterError, croniter

        six = len(spec.cron.split(" ")) == 6
        try:
            croniter(spec.cron, _FIRES_FROM, second_at_beginning=six).get_next(datetime)
        except (CroniterError, OverflowError):
            message = f"'{spec.cron}' never fires: no date matches it (e.g. February 30th)"
            problems.append(("cron", message))
    if spec.timezone in _LOCAL_ZONES:
        message = f"'{spec.timezone}' is the server's own zone: use an IANA name such as 'UTC'"
        problems.append(("timezone", message))
    return problems


class ScheduleSpec(BaseModel):
    """A cron expression or a fixed interval (``every``), in an IANA ``timezone``.

    Daylight saving: cron times are wall-clock times in ``timezone``; a time that occurs
    twice (clocks go back) fires once, at its first occurrence; a time that does not occur
    (clocks go forward) fires once, right after the gap. ``every`` follows elapsed time."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["schedule"] = "schedule"
    id: str = Field(min_length=1, max_length=100, pattern=TRIGGER_ID)
    cron: str | None = Field(default=None, description="5 or 6 fields, or @hourly-style")
    every: Duration | None = Field(default=None, description="a fixed interval instead of cron")
    timezone: str = "UTC"
    jitter: Duration | None = Field(
        default=None, description="start each occurrence up to this much later (stable)"
    )
    input: Any = Field(default_factory=dict, description="the input of each execution")
    enabled: bool = True
    overlap: OverlapPolicy = Field(
        default="skip", description="when the previous execution still runs"
    )
    catchup: CatchupPolicy = Field(
        default="skip", description="occurrences missed while no scheduler ran"
    )
    catchup_window: Duration = Field(
        default=timedelta(days=1), description="how far back 'all' catches up"
    )
    misfire_grace: Duration = Field(
        default=timedelta(seconds=60),
        description="an occurrence handled later than this after its time counts as missed",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else normalize_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule has either 'cron' or 'every'")
        if self.every is not None and self.every < timedelta(seconds=1):
            raise ValueError("'every' is at least 1s")
        if self.misfire_grace < timedelta(seconds=1):
            raise ValueError("'misfire_grace' is at least 1s")
        return self


Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
SignatureScheme = Literal["standard", "github", "stripe", "slack", "hmac"]


class HmacScheme(BaseModel):
    """A generic HMAC signature: ``header`` holds ``prefix`` + the digest of the signed
    ``parts`` joined by ``separator``. A part is ``body``, ``timestamp`` (from
    ``timestamp_header``), ``method``, ``path``, ``url`` or ``header:<name>``."""

    model_config = ConfigDict(extra="forbid")

    header: str = Field(min_length=1, max_length=100)
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field(default="", max_length=40)
    parts: list[str] = Field(default_factory=lambda: ["body"], min_length=1)
    separator: str = Field(default="", max_length=10)
    timestamp_header: str | None = None

    @field_validator("parts")
    @classmethod
    def _parts(cls, value: list[str]) -> list[str]:
        known = {"body", "timestamp", "method", "path", "url"}
        for part in value:
            if part not in known and not re.fullmatch(r"header:[A-Za-z0-9\-_]+", part):
                raise ValueError(f"unknown signed part '{part}'")
        return value


class WebhookAuth(BaseModel):
    """``none`` must be chosen explicitly; ``header``: a secret token in ``header``;
    ``basic``: HTTP basic with ``username`` and the secret as password; ``signature``: an
    HMAC of the raw body by ``scheme`` (default: Standard Webhooks)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["none", "header", "basic", "signature"] = "signature"
    scheme: SignatureScheme = "standard"
    header: str = Field(default="Authorization", max_length=100)
    username: str | None = Field(default=None, max_length=200)
    hmac: HmacScheme | None = None
    tolerance: Duration = Field(
        default=timedelta(minutes=5), description="replay window for signed timestamps"
    )

    @model_validator(mode="after")
    def _complete(self) -> WebhookAuth:
        if self.mode == "signature" and self.scheme == "hmac" and self.hmac is None:
            raise ValueError("the 'hmac' scheme needs an 'hmac' section")
        if self.mode == "basic" and not self.username:
            raise ValueError("basic auth needs a 'username'")
        return self


class WebhookResponse(BaseModel):
    """``async``: 202 with the execution's id and URLs; ``sync``: wait up to ``timeout``
    for the result (or ``node``'s output) and answer with ``status`` and ``headers``,
    else 202; ``stream``: the execution's events as server-sent events."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["async", "sync", "stream"] = "async"
    timeout: Duration = timedelta(seconds=30)
    node: str | None = None
    status: int = Field(default=200, ge=200, le=599)
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounded(self) -> WebhookResponse:
        if self.timeout > MAX_SYNC_WAIT:
            raise ValueError("a sync response waits at most 5m")
        if self.timeout <= timedelta(0):
            raise ValueError("a sync response waits more than 0s")
        for name, value in self.headers.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"'{name}' is not an HTTP header name")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"the value of header '{name}' has a line break or NUL")
        return self


class WebhookDedupe(BaseModel):
    """Where a delivery's id comes from: a ``header`` or a ``template`` over the request
    (``slack:{{ body.event_id }}``). Standard Webhooks' ``webhook-id`` is used by default."""

    model_config = ConfigDict(extra="forbid")

    header: str | None = Field(default=None, max_length=100)
    template: str | None = Field(default=None, max_length=500)


def _post_only() -> list[Method]:
    return ["POST"]


class WebhookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"] = "webhook"
    id: str = Field(min_length=1, max_length=100, pattern=TRIGGER_ID)
    methods: list[Method] = Field(default_factory=_post_only, min_length=1)
    auth: WebhookAuth = Field(default_factory=WebhookAuth)
    response: WebhookResponse = Field(default_factory=WebhookResponse)
    dedupe: WebhookDedupe | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)
    keep_raw_body: bool = Field(
        default=False, description="also pass the raw body (base64) as trigger.raw_body"
    )
    enabled: bool = True

    @field_validator("methods", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        return [v.upper() if isinstance(v, str) else v for v in value]


TriggerSpec = Annotated[ScheduleSpec | WebhookSpec, Field(discriminator="type")]


def unique_ids(triggers: list[ScheduleSpec | WebhookSpec]) -> None:
    seen: set[str] = set()
    for trigger in triggers:
        if trigger.id in seen:
            raise ValueError(f"two triggers have the id '{trigger.id}'")
        seen.add(trigger.id)
