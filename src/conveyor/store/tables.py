"""The schema, declared once for both dialects; migrations must produce exactly this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


_OPTIONS = orjson.OPT_NON_STR_KEYS
_DEEPEST = 200  # orjson refuses nesting past 255 levels


def dumps(value: Any) -> str:
    """JSON for stored data: fast, and anything unknown becomes its string form. What the
    encoder refuses (an integer past 64 bits, a lone surrogate, nesting past 255 levels) is
    stored as text instead of failing the write: inputs and step outputs holding such values
    are refused before they get here, and this keeps every record (a failed step's rendered
    config, an event) writable, so an execution never stops on a write that cannot happen."""
    return json_bytes(value).decode()


def json_bytes(value: Any) -> bytes:
    """``dumps`` as UTF-8 bytes (what live streams send: never an error for odd data)."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return orjson.dumps(_encodable(value, 0), default=str, option=_OPTIONS)


def _encodable(value: Any, depth: int) -> Any:
    if depth > _DEEPEST:
        return str(value)[:10_000]
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, dict):
        return {_encodable(k, depth): _encodable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item, depth + 1) for item in value]
    return value


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC everywhere: timestamptz on PostgreSQL, fixed-width text on SQLite.

    The fixed width keeps SQLite's text comparisons in time order, so the same SQL compares
    timestamps on both dialects.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.strftime(SQLITE_TIME_FORMAT)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            # The text SQLITE_TIME_FORMAT wrote: fromisoformat parses it in C, about 7 times
            # faster than strptime (which was most of the CPU of reading rows of events).
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        assert isinstance(value, datetime)
        return value.astimezone(UTC)


class JsonText(TypeDecorator[Any]):
    """JSON kept in a TEXT column on SQLite: a column declared JSON has numeric affinity
    there, which would turn the JSON text "1" into the integer 1."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else orjson.loads(value)


Json = JSON().with_variant(JSONB(), "postgresql").with_variant(JsonText(), "sqlite")
Id = String(32)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Copied onto each execution a user starts (``user_limit``); NULL: no per-user limit.
    Column("max_running_per_user", Integer, server_default="10"),
    # Hosts and networks this workspace's steps may connect to (narrows the operator's
    # rules, never widens them); NULL or empty: no list of its own.
    Column("outbound_allowlist", Json),
)

workflows = Table(
    "workflows",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("latest_version", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Statistics kept O(1): maintained in the transaction that finishes an execution.
    Column("executions_finished", BigInteger, nullable=False, server_default="0"),
    Column("executions_succeeded", BigInteger, nullable=False, server_default="0"),
    Column("executions_failed", BigInteger, nullable=False, server_default="0"),
    Column("executions_cancelled", BigInteger, nullable=False, server_default="0"),
    Column("executions_timed_out", BigInteger, nullable=False, server_default="0"),
    Column("duration_total_ms", BigInteger, nullable=False, server_default="0"),
    Column("last_executed_at", UTCDateTime()),
    UniqueConstraint("workspace_id", "name"),
)

workflow_versions = Table(
    "workflow_versions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workflow_id", Id, ForeignKey("workflows.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Json, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workflow_id", "version"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id"), nullable=False),
    Column("workflow_id", Id, ForeignKey("workflows.id"), nullable=False),
    Column("version_id", Id, ForeignKey("workflow_versions.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger_type", String(16), nullable=False),
    Column("result", Json),
    Column("error", Json),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("available_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("deadline_at", UTCDateTime()),
    Column("lease_owner", String(64)),
    Column("lease_number", BigInteger, nullable=False, server_default="0"),
    Column("lease_expires_at", UTCDateTime()),
    Column("cancel_requested", Boolean, nullable=False, server_default=text("false")),
    Column("recoveries", Integer, nullable=False, server_default="0"),
    # Crash attribution (G6): an execution that had a step in flight when its worker died
    # is a suspect and runs alone in a worker until a step of it finishes; only a crash
    # while it ran alone counts against it.
    Column("suspect", Boolean, nullable=False, server_default=text("false")),
    Column("crashes", Integer, nullable=False, server_default="0"),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("idempotency_key", String(200)),
    # Flow control, copied from the pinned version at enqueue and enforced at claim time.
    Column("concurrency_key", String(200)),
    Column("key_limit", Integer),
    Column("workflow_limit", Integer),
    Column("rate_limit", Integer),
    Column("rate_period_seconds", Float),
    Column("wait_reason", Text),
    Column("parent_execution_id", Id),
    Column("parent_node_id", String(100)),
    Column("retry_of", Id),
    # The schedule or webhook that started it (trigger_type says which).
    Column("trigger_id", Id),
    Column("created_by", Id),
    Column("user_limit", Integer),
    Column("event_seq", BigInteger, nullable=False, server_default="0"),
    Column("steps_total", Integer, nullable=False, server_default="0"),
    Column("steps_succeeded", Integer, nullable=False, server_default="0"),
    Column("steps_failed", Integer, nullable=False, server_default="0"),
    Column("steps_skipped", Integer, nullable=False, server_default="0"),
    Column("steps_running", Integer, nullable=False, server_default="0"),
    Column("usage_tokens", BigInteger, nullable=False, server_default="0"),
    Column("usage_api_calls", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("workflow_id", "idempotency_key"),
    Index("ix_executions_ready", "status", "available_at"),
    Index("ix_executions_lease", "status", "lease_expires_at"),
    # Covering on PostgreSQL, so counts over a time range are index-only scans.
    Index(
        "ix_executions_workspace_created",
        "workspace_id",
        "created_at",
        postgresql_include=["status", "started_at", "finished_at"],
    ),
    Index("ix_executions_workflow_created", "workflow_id", "created_at"),
    Index("ix_executions_workflow_status", "workflow_id", "status"),
    Index("ix_executions_key_status", "concurrency_key", "status"),
    Index("ix_executions_workflow_started", "workflow_id", "started_at"),
    Index("ix_executions_workflow_finished", "workflow_id", "finished_at"),
    Index("ix_executions_workspace_status", "workspace_id", "status"),
    Index("ix_executions_created_by", "workspace_id", "created_by", "created_at"),
    # Empty but for suspects: every busy claim asks whether one is waiting to run alone.
    Index(
        "ix_executions_suspect",
        "status",
        postgresql_where=text("suspect"),
        sqlite_where=text("suspect"),
    ),
    Index("ix_executions_user_status", "workspace_id", "created_by", "status"),
    Index(
        "ix_executions_trigger_created",
        "trigger_id",
        "created_at",
        postgresql_where=text("trigger_id IS NOT NULL"),
        sqlite_where=text("trigger_id IS NOT NULL"),
    ),
)

steps = Table(
    "steps",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("execution_id", Id, ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("node_type", String(100), nullable=False),
    Column("attempt", Integer, nullable=False),
    # The order in which the attempt started within its execution (1-based).
    Column("step_index", Integer),
    Column("status", String(16), nullable=False),
    Column("input", Json),
    Column("output", Json),
    Column("error", Json),
    Column("logs", Json),
    Column("branch", String(100)),
    Column("continued", Boolean, nullable=False, server_default=text("false")),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("wait_until", UTCDateTime()),
    Column("wait_signal", String(200)),
    Column("usage_tokens", BigInteger, nullable=False, server_default="0"),
    Column("usage_api_calls", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("execution_id", "node_id", "attempt"),
)

events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("execution_id", Id, ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("workspace_id", Id, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("data", Json, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("execution_id", "seq"),
)

# An execution's input, written once at enqueue, in a row of its own: every transition
# updates the executions row, and SQLite rewrites a whole row (overflow pages and all) on any
# update, so an input kept there was written again at every step.
execution_inputs = Table(
    "execution_inputs",
    metadata,
    Column(
        "execution_id",
        Id,
        ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("input", Json, nullable=False),
)

signals = Table(
    "signals",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("execution_id", Id, ForeignKey("executions.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("data", Json),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("consumed_by", String(100)),
    Index("ix_signals_execution_name", "execution_id", "name"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id"), nullable=False),
    Column("execution_id", Id, ForeignKey("executions.id", ondelete="CASCADE")),
    Column("node_id", String(100)),
    Column("channel", String(100), nullable=False),
    Column("title", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("data", Json),
    Column("created_at", UTCDateTime(), nullable=False),
    # NULL: to everyone in the workspace; else to that user only.
    Column("recipient_id", Id),
    Column("read_at", UTCDateTime()),
    Column("read_by", Id),
    # ``execution id : node id``: a retried step finds its notification instead of adding one.
    Column("idempotency_key", String(200), unique=True),
    Index("ix_notifications_workspace_created", "workspace_id", "created_at"),
    Index(
        "ix_notifications_unread",
        "workspace_id",
        "recipient_id",
        postgresql_where=text("read_at IS NULL"),
        sqlite_where=text("read_at IS NULL"),
    ),
)

# Work for a person, made by a task.create step: open until someone marks it done.
# ``assignee_id`` is set when the assignee is a user; ``assignee_email`` whenever known
# (a person without an account yet is assigned by email alone).
tasks = Table(
    "tasks",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    # An open task outlives its execution (retention, a deletion): only the link goes.
    Column("execution_id", Id, ForeignKey("executions.id", ondelete="SET NULL")),
    Column("node_id", String(100)),
    Column("idempotency_key", String(200), unique=True),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False, server_default=""),
    Column("assignee_id", Id),
    Column("assignee_email", String(320)),
    Column("due_at", UTCDateTime()),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("done_at", UTCDateTime()),
    Column("done_by", Id),
    Index("ix_tasks_workspace_status", "workspace_id", "status", "created_at"),
)


users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, server_default=""),
    Column("password_hash", Text, nullable=False),
    Column("is_admin", Boolean, nullable=False, server_default=text("false")),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_login_at", UTCDateTime()),
)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime()),
    Column("revoked_at", UTCDateTime()),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)

# Per-user usage kept O(1): maintained in the transaction that finishes an execution.
user_usage = Table(
    "user_usage",
    metadata,
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Id, primary_key=True),
    Column("executions", BigInteger, nullable=False, server_default="0"),
    Column("tokens", BigInteger, nullable=False, server_default="0"),
    Column("api_calls", BigInteger, nullable=False, server_default="0"),
    Column("last_executed_at", UTCDateTime()),
)


# Triggers. ``key`` is the trigger's id within its workflow (``triggers: - id: nightly``);
# ``source`` says whether the workflow's definition declares it (kept in step with each new
# version) or the API created it. Deleting sets ``deleted_at``: a deleted webhook's token
# stays taken, so its URL answers 404 forever.
_LIVE = "deleted_at IS NULL"

schedules = Table(
    "schedules",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("workflow_id", Id, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(100), nullable=False),
    Column("source", String(16), nullable=False),
    Column("spec", Json, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    # NULL: not computed yet (new or changed timing); the scheduler fills it in.
    Column("next_fire_at", UTCDateTime()),
    Column("last_fire_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime()),
    Index(
        "uq_schedules_workflow_key",
        "workflow_id",
        "key",
        unique=True,
        postgresql_where=text(_LIVE),
        sqlite_where=text(_LIVE),
    ),
    Index(
        "ix_schedules_due",
        "next_fire_at",
        postgresql_where=text(_LIVE),
        sqlite_where=text(_LIVE),
    ),
)

# One row per occurrence of a schedule, keyed by its nominal time: the unique constraint is
# what makes an occurrence start at most one execution, however many schedulers run.
# status: started, skipped (with the reason), missed (catch-up policy), buffered (waits for
# the previous execution to finish, overlap policy).
schedule_fires = Table(
    "schedule_fires",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("schedule_id", Id, ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False),
    Column("nominal_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("execution_id", Id),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("schedule_id", "nominal_at"),
    Index(
        "ix_schedule_fires_buffered",
        "schedule_id",
        postgresql_where=text("status = 'buffered'"),
        sqlite_where=text("status = 'buffered'"),
    ),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("workflow_id", Id, ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(100), nullable=False),
    Column("source", String(16), nullable=False),
    Column("token", String(64), nullable=False, unique=True),
    Column("spec", Json, nullable=False),
    # The signing secret or token, encrypted (secrets.Keyring); NULL for auth mode none.
    Column("secret", Text),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("last_delivery_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime()),
    Index(
        "uq_webhooks_workflow_key",
        "workflow_id",
        "key",
        unique=True,
        postgresql_where=text(_LIVE),
        sqlite_where=text(_LIVE),
    ),
)

# Every request a webhook answered, accepted or refused (what the dashboard lists).
# outcome: started, duplicate, refused (auth), rejected (bad request), failed.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("webhook_id", Id, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("delivery_id", String(200)),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("method", String(10), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text),
    Column("execution_id", Id),
    Column("client", String(64)),
    Index("ix_webhook_deliveries_webhook_received", "webhook_id", "received_at"),
)

# Credentials (conveyor.credentials): every field encrypted together in ``secret``
# (secrets.Keyring, purpose ``credential:<id>``); the non-secret ones also in ``public``.
credentials = Table(
    "credentials",
    metadata,
    Column("id", Id, primary_key=True),
    Column("workspace_id", Id, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("type", String(32), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("public", Json, nullable=False),
    Column("secret", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", Id),
    UniqueConstraint("workspace_id", "name"),
)

# What a step finished inside itself (an inline foreach item, an agent's tool call), so a
# later attempt of the step reuses it instead of doing it again. Written through the
# runner's scrubbed services: never a secret.
step_checkpoints = Table(
    "step_checkpoints",
    metadata,
    Column("execution_id", Id, ForeignKey("executions.id", ondelete="CASCADE"), primary_key=True),
    Column("node_id", String(100), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("value", Json),
    Column("created_at", UTCDateTime(), nullable=False),
)

# Who changed what, when and from where (store/audit.py). Append-only: a trigger on each
# dialect (migration 0012) refuses UPDATE and DELETE, and the store has no path for either;
# only an operator's retention job may prune it (docs/audit.md). No foreign keys: an entry
# outlives the user, key or workspace it names. workspace_id NULL: a sign-in, which belongs
# to no workspace (listed with the workspaces its user is a member of).
audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("workspace_id", Id),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor_user_id", Id),
    Column("actor_api_key_id", Id),
    Column("actor", String(320), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32)),
    Column("target_id", String(200)),
    Column("details", Json),
    Column("ip", String(64)),
    Column("user_agent", String(400)),
    Column("channel", String(16), nullable=False),
    Index("ix_audit_log_workspace_id", "workspace_id", "id"),
    Index("ix_audit_log_actor_user_id", "actor_user_id", "id"),
)
