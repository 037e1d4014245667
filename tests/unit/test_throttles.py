"""The brute-force and flooding limits as pure bookkeeping, on a hand-moved clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.api.throttles import (
    FailureWindow,
    Throttles,
    ThrottleSettings,
    TokenBucket,
)
from conveyor.errors import TooManyRequests
from conveyor.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_block_at_the_limit_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    window = FailureWindow(3, timedelta(seconds=60), clock)
    for _ in range(2):
        window.fail("k")
        clock.now += 10
    assert window.retry_after("k") is None
    window.fail("k")  # the third, at t=20
    assert window.retry_after("k") == pytest.approx(40)  # the first (t=0) leaves at t=60
    assert window.retry_after("other") is None
    clock.now += 39.9
    assert window.retry_after("k") is not None
    clock.now += 0.2
    assert window.retry_after("k") is None  # one slot free again, not the whole window
    window.fail("k")
    assert window.retry_after("k") == pytest.approx(10 - 0.1)


def test_a_success_resets_and_a_zero_limit_never_blocks() -> None:
    clock = Clock()
    window = FailureWindow(2, timedelta(minutes=15), clock)
    window.fail("k")
    window.fail("k")
    assert window.retry_after("k") is not None
    window.reset("k")
    assert window.retry_after("k") is None
    off = FailureWindow(0, timedelta(minutes=15), clock)
    for _ in range(100):
        off.fail("k")
    assert off.retry_after("k") is None


def test_memory_is_bounded_by_forgetting_the_oldest_keys() -> None:
    window = FailureWindow(1, timedelta(minutes=1), Clock(), max_keys=3)
    for key in "abcd":
        window.fail(key)
    assert window.retry_after("a") is None  # forgotten
    assert all(window.retry_after(k) is not None for k in "bcd")
    bucket = TokenBucket(1, 1, Clock(), max_keys=2)
    for key in "abc":
        assert bucket.take(key) is None
    assert bucket.take("a") is None  # forgotten, so full again
    assert bucket.take("c") is not None


def test_token_bucket_admits_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.take("w") for _ in range(5)] == [None] * 5
    wait = bucket.take("w")
    assert wait == pytest.approx(0.1)
    assert bucket.take("other") is None  # per key
    clock.now += 0.1
    assert bucket.take("w") is None
    assert bucket.take("w") is not None
    clock.now += 60  # refills only up to the burst
    assert [bucket.take("w") for _ in range(6)].count(None) == 5
    assert TokenBucket(0, 1, clock).take("w") is None  # rate 0: off


def test_signin_limits_per_account_and_address_and_per_address() -> None:
    clock = Clock()
    settings = ThrottleSettings(
        signin_failures=3, signin_failures_per_client=5, signin_window=timedelta(minutes=15)
    )
    limits = Throttles(settings, clock)
    for email in ("Ann@example.com", "ann@example.com ", "ANN@example.com"):
        limits.signin_attempt(email, "1.2.3.4")  # each counted until it succeeds
    with pytest.raises(TooManyRequests) as refused:
        limits.signin_attempt("ann@example.com", "1.2.3.4")
    assert refused.value.retry_after == timedelta(seconds=900)
    limits.signin_attempt("ann@example.com", "5.6.7.8")  # another address: its own count
    limits.signin_attempt("bob@example.com", "1.2.3.4")
    limits.signin_attempt("cy@example.com", "1.2.3.4")  # the address's fifth
    with pytest.raises(TooManyRequests):
        limits.signin_attempt("dee@example.com", "1.2.3.4")
    clock.now += 900
    limits.signin_attempt("ann@example.com", "1.2.3.4")  # the window passed


def test_a_successful_signin_resets_the_account_and_refunds_the_address() -> None:
    limits = Throttles(ThrottleSettings(signin_failures=2, signin_failures_per_client=3), Clock())
    for _ in range(5):  # successes alone never block anyone
        limits.signin_attempt("ann@example.com", "ip")
        limits.signin_succeeded("ann@example.com", "ip")
    limits.signin_attempt("ann@example.com", "ip")  # failed
    limits.signin_attempt("ann@example.com", "ip")  # succeeded: the account starts over
    limits.signin_succeeded("ann@example.com", "ip")
    limits.signin_attempt("ann@example.com", "ip")  # failed; the address has two now
    limits.signin_attempt("bob@example.com", "ip")  # failed: the address's third
    with pytest.raises(TooManyRequests):
        limits.signin_attempt("cy@example.com", "ip")


def test_api_keys_and_webhooks_refuse_with_whole_seconds() -> None:
    clock = Clock()
    limits = Throttles(
        ThrottleSettings(api_key_failures=2, webhook_rate=0.5, webhook_burst=1), clock
    )
    limits.api_key_failed("ip")
    limits.check_api_key("ip")
    limits.api_key_failed("ip")
    with pytest.raises(TooManyRequests, match="invalid API keys"):
        limits.check_api_key("ip")
    limits.admit_delivery("hook")
    with pytest.raises(TooManyRequests, match="too many deliveries") as refused:
        limits.admit_delivery("hook")
    assert refused.value.retry_after == timedelta(seconds=2)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_SIGNIN_FAILURES", "4")
    monkeypatch.setenv("CONVEYOR_SIGNIN_WINDOW_SECONDS", "60")
    monkeypatch.setenv("CONVEYOR_WEBHOOK_RATE", "0")
    built = ThrottleSettings.of(Settings())
    assert built.signin_failures == 4
    assert built.signin_window == timedelta(seconds=60)
    assert built.webhook_rate == 0
    assert built.api_key_failures == ThrottleSettings().api_key_failures
