"""Settings read from CONVEYOR_* environment variables, only at the edges (CLI, server).

A plain pydantic model that reads the environment itself: pydantic-settings did the same
for these flat fields but loads its every source (dotenv, TOML, YAML, cloud secret stores,
argparse, importlib.metadata), about 3 MB in every worker process.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_DATABASE_URL = "sqlite:///conveyor.db"
ENV_PREFIX = "CONVEYOR_"


class Settings(BaseModel):
    """Each field is the keyword given, else ``CONVEYOR_<FIELD>`` (any case), else its
    default; values from the environment are text that pydantic converts (``true``, ``30``)."""

    model_config = ConfigDict(extra="ignore", validate_default=True)

    database_url: str = DEFAULT_DATABASE_URL
    # Outbound connections to loopback, private, link-local and other internal addresses are
    # refused unless this is set (cloud metadata always is); tests that talk to a local server
    # set it. docs/security.md.
    allow_private_network: bool = False
    # Code nodes run under bubblewrap; where it is missing or unusable they are refused unless
    # this is set, and then run with resource limits only (no isolation from the host).
    allow_unsandboxed_code: bool = False
    # When not empty, outbound connections go only to these hosts (example.com,
    # *.example.com) or networks (10.1.0.0/16; a listed private network is allowed without
    # allow_private_network). A comma-separated list; docs/security.md.
    outbound_allowlist: tuple[str, ...] = ()
    # Brute-force and flooding limits, counted per API server process (0 turns one off);
    # over one the API answers 429 with Retry-After. docs/security.md.
    signin_failures: int = Field(default=10, ge=0)  # per account and client address
    signin_failures_per_client: int = Field(default=50, ge=0)  # per client address
    signin_window_seconds: float = Field(default=900.0, gt=0)
    api_key_failures: int = Field(default=30, ge=0)  # invalid API keys per client address
    api_key_window_seconds: float = Field(default=300.0, gt=0)
    webhook_rate: float = Field(default=50.0, ge=0)  # deliveries per second per webhook
    webhook_burst: int = Field(default=100, ge=1)
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    poll_seconds: float = Field(default=1.0, gt=0)
    max_recoveries: int = Field(default=5, ge=1)
    # A wait or retry due later than this releases the worker slot (status waiting).
    hold_timers_seconds: float = Field(default=5.0, ge=0)
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # Creates the first admin on an empty database (never overwrites anyone).
    admin_email: str | None = None
    admin_password: str | None = None
    # What a Prometheus scraper sends (Authorization: Bearer ...) to read /metrics for every
    # workspace; without it only a workspace's owners read /metrics, for theirs alone.
    metrics_token: str | None = None
    # Finished executions are deleted after this many days (0 keeps them forever).
    retention_succeeded_days: float = Field(default=14, ge=0)
    retention_failed_days: float = Field(default=90, ge=0)
    # Size limits (bytes of compact JSON; 0: none). Over them the API answers 413 and the
    # CLI exits 2, naming the setting; a step output over its limit fails the step.
    max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=0)
    max_input_bytes: int = Field(default=1024 * 1024, ge=0)
    max_definition_bytes: int = Field(default=1024 * 1024, ge=0)
    max_step_output_bytes: int = Field(default=1024 * 1024, ge=0)
    # Every `conveyor server` and `conveyor worker` runs the scheduler unless this is false
    # (CONVEYOR_SCHEDULER=false, or --no-scheduler); it looks for due schedules at least
    # this often (and sleeps until the next fire time when that is sooner).
    scheduler: bool = True
    # Tests only: failpoints to arm in `conveyor worker` and `conveyor server`
    # (src/conveyor/failpoints.py). Never set in production.
    test_failpoints: str = ""
    scheduler_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Log lines kept per step; later ones are dropped and counted in one marker line.
    max_log_lines: int = Field(default=1000, ge=0)
    # LLM prices per million tokens, {model: {input, output, cached?}}: JSON text or the path
    # of a JSON file; llm steps then record a cost with their token usage.
    llm_prices: str | None = None
    # The LLM that `conveyor generate` asks for workflow drafts (an OpenAI-compatible
    # endpoint, or anthropic).
    llm_base_url: str | None = None
    llm_api_key: str = ""
    llm_model: str | None = None
    llm_provider: Literal["openai", "anthropic"] = "openai"

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, given: Any) -> Any:
        if not isinstance(given, dict):
            return given
        found = {
            name[len(ENV_PREFIX) :].lower(): value
            for name, value in os.environ.items()
            if name[: len(ENV_PREFIX)].upper() == ENV_PREFIX
        }
        return {
            **{name: found[name] for name in cls.model_fields if name in found},
            **given,
        }

    @field_validator("outbound_allowlist", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(entry.strip() for entry in value.split(",") if entry.strip())
        return value

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    @property
    def heartbeat(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_seconds)
