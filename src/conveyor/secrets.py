"""Secrets at rest: authenticated encryption (AES-256-GCM) under versioned keys.

Keys come from ``CONVEYOR_SECRET_KEY`` (one or more keys separated by commas, the first
encrypts, all decrypt: that is how a key is rotated) or, when it is unset, from a key file
generated on first use with permissions 0600: next to the SQLite database file
(``conveyor.db.key``), or ``~/.config/conveyor/secret.key`` for PostgreSQL. Every process
that shares a PostgreSQL database must have the same keys: set ``CONVEYOR_SECRET_KEY``.

A stored value reads ``v1.<key id>.<base64(nonce + ciphertext + tag)>``; the key id (the
first 8 hex digits of the key's SHA-256) says which key decrypts it, so an unknown key fails
with a message naming it instead of garbage. The associated data binds a value to its
purpose (``webhook:<id>``), so a ciphertext copied into another row does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets as random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import ConveyorError

ENV_KEY = "CONVEYOR_SECRET_KEY"
ENV_KEY_FILE = "CONVEYOR_SECRET_KEY_FILE"
_VERSION = "v1"

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretKeyError(ConveyorError):
    """No usable key, or a value encrypted with a key this process does not have."""


def _key_bytes(text: str) -> bytes:
    """A key as given: 32 bytes in urlsafe base64 (what ``new_key`` prints), or any other
    string of at least 32 characters, stretched with SHA-256."""
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if len(raw) == 32:
            return raw
    except ValueError:
        pass
    if len(text) < 32:
        raise SecretKeyError(
            f"{ENV_KEY} must be at least 32 characters (make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return hashlib.sha256(text.encode()).digest()


def _aesgcm(key: bytes) -> AESGCM:
    """Imported on first use: cryptography's Rust module (its own OpenSSL) costs a process
    about 8 MB of memory, which a worker whose steps never touch a secret does not pay."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def new_key() -> str:
    return base64.urlsafe_b64encode(random.token_bytes(32)).decode().rstrip("=")


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


@dataclass(frozen=True)
class Keyring:
    """The keys of this process: ``keys[0]`` encrypts; any of them decrypts."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise SecretKeyError("a keyring needs at least one key")

    @classmethod
    def from_text(cls, text: str) -> Keyring:
        return cls(tuple(_key_bytes(part) for part in text.split(",") if part.strip()))

    @classmethod
    def load(cls, database_url: str | None = None) -> Keyring:
        """From ``CONVEYOR_SECRET_KEY``, else from (or into) the default key file."""
        text = os.environ.get(ENV_KEY, "").strip()
        if text:
            return cls.from_text(text)
        return cls.from_file(Path(os.environ.get(ENV_KEY_FILE) or default_key_file(database_url)))

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                pass
            else:
                with os.fdopen(fd, "w") as file:
                    file.write(new_key() + "\n")
        try:
            text = path.read_text()
        except OSError as exc:
            raise SecretKeyError(f"cannot read the secret key file {path}: {exc}") from None
        return cls.from_text(text.replace("\n", ","))

    @property
    def current_id(self) -> str:
        return key_id(self.keys[0])

    def encrypt(self, plaintext: str, purpose: str) -> str:
        nonce = random.token_bytes(12)
        sealed = _aesgcm(self.keys[0]).encrypt(nonce, plaintext.encode(), purpose.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{_VERSION}.{self.current_id}.{body}"

    def decrypt(self, stored: str, purpose: str) -> str:
        try:
            version, kid, body = stored.split(".", 2)
        except ValueError:
            raise SecretKeyError("a stored secret is not in a known format") from None
        key = next((k for k in self.keys if key_id(k) == kid), None)
        if version != _VERSION or key is None:
            raise SecretKeyError(
                f"a secret was encrypted with key {kid}, which this process does not have "
                f"(it has {', '.join(key_id(k) for k in self.keys)}); give every process the "
                f"same {ENV_KEY}"
            )
        raw = base64.urlsafe_b64decode(body)
        try:
            return _aesgcm(key).decrypt(raw[:12], raw[12:], purpose.encode()).decode()
        except Exception:  # InvalidTag: tampered, or moved to another row
            raise SecretKeyError("a stored secret failed its integrity check") from None

    def needs_rotation(self, stored: str) -> bool:
        return not stored.startswith(f"{_VERSION}.{self.current_id}.")


def default_key_file(database_url: str | None) -> Path:
    if database_url:
        raw = database_url
        if "://" not in raw:
            raw = f"sqlite:///{raw}"
        if raw.startswith("sqlite") and ":memory:" not in raw:
            path = raw.split("///", 1)[-1].split("?", 1)[0]
            if path:
                return Path(path + ".key")
    return Path.home() / ".config" / "conveyor" / "secret.key"


def new_secret(prefix: str = "whsec_") -> str:
    """A random signing secret in Standard Webhooks' form (``whsec_`` + base64 of 24 bytes)."""
    return prefix + base64.b64encode(random.token_bytes(24)).decode()
