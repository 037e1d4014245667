"""Secrets at rest: AES-GCM under versioned keys, bound to their purpose."""

from __future__ import annotations

import pytest

from conveyor.secrets import Keyring, SecretKeyError, key_id, new_key, new_secret

OLD, NEW = new_key(), new_key()


def test_round_trip_and_the_ciphertext_hides_the_value() -> None:
    ring = Keyring.from_text(NEW)
    sealed = ring.encrypt("whsec_top-secret", "webhook:1")
    assert "top-secret" not in sealed
    assert sealed.startswith(f"v1.{ring.current_id}.")
    assert ring.decrypt(sealed, "webhook:1") == "whsec_top-secret"
    # A fresh nonce each time: the same secret never encrypts to the same text.
    assert ring.encrypt("whsec_top-secret", "webhook:1") != sealed


def test_a_value_moved_to_another_row_or_tampered_with_does_not_decrypt() -> None:
    ring = Keyring.from_text(NEW)
    sealed = ring.encrypt("s3cret", "webhook:1")
    with pytest.raises(SecretKeyError, match="integrity"):
        ring.decrypt(sealed, "webhook:2")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretKeyError, match="integrity"):
        ring.decrypt(flipped, "webhook:1")


def test_rotation_new_key_first_old_key_still_decrypts() -> None:
    before = Keyring.from_text(OLD).encrypt("v", "p")
    rotated = Keyring.from_text(f"{NEW},{OLD}")
    assert rotated.decrypt(before, "p") == "v"
    assert rotated.needs_rotation(before)
    assert not rotated.needs_rotation(rotated.encrypt("v", "p"))


def test_an_unknown_key_is_named_not_garbage() -> None:
    sealed = Keyring.from_text(OLD).encrypt("v", "p")
    with pytest.raises(SecretKeyError, match=key_id(Keyring.from_text(OLD).keys[0])):
        Keyring.from_text(NEW).decrypt(sealed, "p")


def test_short_keys_are_refused_and_long_passphrases_are_stretched() -> None:
    with pytest.raises(SecretKeyError, match="at least 32"):
        Keyring.from_text("too-short")
    ring = Keyring.from_text("x" * 40)
    assert len(ring.keys[0]) == 32


def test_generated_signing_secrets_are_standard_webhooks_shaped() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret) > 30
    assert secret != new_secret()
