"""Without CONVEYOR_SECRET_KEY a key file is made once, 0600, next to the SQLite file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from conveyor.secrets import ENV_KEY, ENV_KEY_FILE, Keyring, default_key_file


def test_the_key_file_is_made_once_with_owner_only_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    url = f"sqlite:///{tmp_path / 'conveyor.db'}"
    assert default_key_file(url) == tmp_path / "conveyor.db.key"
    first = Keyring.load(url)
    path = tmp_path / "conveyor.db.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = first.encrypt("value", "purpose")
    # Another process (or a restart) reads the same key.
    assert Keyring.load(url).decrypt(sealed, "purpose") == "value"


def test_the_environment_key_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, "k" * 40)
    ring = Keyring.load(f"sqlite:///{tmp_path / 'conveyor.db'}")
    assert ring == Keyring.from_text("k" * 40)
    assert not (tmp_path / "conveyor.db.key").exists()
