"""Brute-force and flooding limits: failed sign-ins and API keys counted in a sliding
window, and webhook deliveries metered by a token bucket. Pure bookkeeping over an injected
monotonic clock; the routes turn a refusal into :class:`~conveyor.errors.TooManyRequests`.

State lives in this process's memory: with several API servers behind a load balancer each
counts on its own, so an attacker spread over all of them gets ``servers x limit`` tries.
Memory is bounded: past ``max_keys`` keys the oldest are forgotten (an attacker who sprays
that many keys gains nothing the per-IP limit does not already stop).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from conveyor.errors import TooManyRequests
from conveyor.settings import Settings

Clock = Callable[[], float]
MAX_KEYS = 100_000


class FailureWindow:
    """At most ``limit`` failures per key within ``period``; once there, the key is refused
    until its oldest failure leaves the window. A success resets the key."""

    def __init__(
        self, limit: int, period: timedelta, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        self.limit = limit
        self.period = period.total_seconds()
        self.clock = clock
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None when it may now (limit 0: always)."""
        if self.limit <= 0:
            return None
        failures = self._failures.get(key)
        if failures is None:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.period:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        if len(failures) < self.limit:
            return None
        return failures[0] + self.period - now

    def fail(self, key: str) -> None:
        if self.limit <= 0:
            return
        failures = self._failures.pop(key, None) or deque(maxlen=self.limit)
        failures.append(self.clock())
        self._failures[key] = failures  # most recently used last
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)

    def refund(self, key: str) -> None:
        """Take back the newest failure of ``key`` (an attempt counted before its outcome
        turned out to be a success)."""
        failures = self._failures.get(key)
        if failures:
            failures.pop()


class TokenBucket:
    """``rate`` admissions per second per key, with bursts of up to ``burst``."""

    def __init__(
        self, rate: float, burst: int, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, key: str) -> float | None:
        """Admit one request (None), or the seconds until a token is free (refused)."""
        if self.rate <= 0:
            return None
        now = self.clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        refused = tokens < 1
        if not refused:
            tokens -= 1
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return (1 - tokens) / self.rate if refused else None


def refuse(wait: float | None, message: str) -> None:
    """Raise TooManyRequests when ``wait`` says so (whole seconds, at least one)."""
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(f"{message}; retry in {seconds}s", timedelta(seconds=seconds))


@dataclass(frozen=True)
class ThrottleSettings:
    """The limits (a limit or rate of 0 turns that one off). From CONVEYOR_* at the edge."""

    signin_failures: int = 10  # per account and client address
    signin_failures_per_client: int = 50  # per client address, any accounts
    signin_window: timedelta = timedelta(minutes=15)
    api_key_failures: int = 30  # invalid API keys per client address
    api_key_window: timedelta = timedelta(minutes=5)
    webhook_rate: float = 50.0  # deliveries per second per webhook
    webhook_burst: int = 100

    @classmethod
    def of(cls, settings: Settings) -> ThrottleSettings:
        return cls(
            signin_failures=settings.signin_failures,
            signin_failures_per_client=settings.signin_failures_per_client,
            signin_window=timedelta(seconds=settings.signin_window_seconds),
            api_key_failures=settings.api_key_failures,
            api_key_window=timedelta(seconds=settings.api_key_window_seconds),
            webhook_rate=settings.webhook_rate,
            webhook_burst=settings.webhook_burst,
        )


@dataclass
class Throttles:
    """Per application: the counters of every limit."""

    settings: ThrottleSettings = field(default_factory=ThrottleSettings)
    clock: Clock = time.monotonic
    signin: FailureWindow = field(init=False)
    signin_client: FailureWindow = field(init=False)
    api_keys: FailureWindow = field(init=False)
    webhooks: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.signin = FailureWindow(s.signin_failures, s.signin_window, self.clock)
        self.signin_client = FailureWindow(
            s.signin_failures_per_client, s.signin_window, self.clock
        )
        self.api_keys = FailureWindow(s.api_key_failures, s.api_key_window, self.clock)
        self.webhooks = TokenBucket(s.webhook_rate, s.webhook_burst, self.clock)

    # -- sign-in: both the dashboard form and POST /auth/login --------------------------------

    def signin_attempt(self, email: str, client: str) -> None:
        """Refuse a sign-in over the limits, else count it as failed until it succeeds:
        counted before the password is checked, so a burst of concurrent guesses cannot
        all pass the check while the first ones are still hashing."""
        account = _account_key(email, client)
        wait = self.signin.retry_after(account)
        if wait is None:
            wait = self.signin_client.retry_after(client)
        refuse(wait, "too many failed sign-ins")
        self.signin.fail(account)
        self.signin_client.fail(client)

    def signin_succeeded(self, email: str, client: str) -> None:
        """Resets the account's count from this address and takes back this attempt from
        the address's count (not all of it: one good password must not buy an attacker a
        fresh round on every other account)."""
        self.signin.reset(_account_key(email, client))
        self.signin_client.refund(client)

    # -- API keys -----------------------------------------------------------------------------

    def check_api_key(self, client: str) -> None:
        refuse(self.api_keys.retry_after(client), "too many invalid API keys from this address")

    def api_key_failed(self, client: str) -> None:
        self.api_keys.fail(client)

    # -- webhooks -----------------------------------------------------------------------------

    def check_hook_url(self, client: str) -> None:
        """An address guessing webhook URLs is refused as one guessing API keys is (the
        token in a hook URL is its credential), on a count of its own."""
        refuse(
            self.api_keys.retry_after(_hook_key(client)),
            "too many unknown webhook URLs from this address",
        )

    def hook_url_failed(self, client: str) -> None:
        self.api_keys.fail(_hook_key(client))

    def admit_delivery(self, webhook_id: str) -> None:
        refuse(self.webhooks.take(webhook_id), "this webhook is receiving too many deliveries")


def _hook_key(client: str) -> str:
    return f"hook\n{client}"


def _account_key(email: str, client: str) -> str:
    return f"{email.strip().lower()}\n{client}"
