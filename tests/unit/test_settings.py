"""Settings read CONVEYOR_* themselves (no pydantic-settings): the rules it had hold."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from conveyor.settings import Settings


def test_a_variable_sets_its_field_in_any_case_and_converts_from_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_LEASE_SECONDS", "12")
    monkeypatch.setenv("conveyor_scheduler", "false")
    monkeypatch.setenv("CONVEYOR_OUTBOUND_ALLOWLIST", "example.com, *.example.org,")
    monkeypatch.setenv("CONVEYOR_NOT_A_SETTING", "ignored")
    settings = Settings()
    assert settings.lease_seconds == 12.0
    assert settings.scheduler is False
    assert settings.outbound_allowlist == ("example.com", "*.example.org")


def test_a_keyword_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_POLL_SECONDS", "3")
    assert Settings(poll_seconds=0.5).poll_seconds == 0.5


def test_a_value_out_of_bounds_is_refused_naming_its_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_PORT", "0")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_unset_fields_keep_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONVEYOR_DATABASE_URL", "CONVEYOR_PORT", "CONVEYOR_OUTBOUND_ALLOWLIST"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url == "sqlite:///conveyor.db"
    assert settings.port == 8080
    assert settings.outbound_allowlist == ()
