"""Unit tests for retry decisions: backoff, attempts, non-retryable errors, retry_after."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.engine.definition import ErrorStrategy, RetryPolicy
from conveyor.engine.retry import (
    DEFAULT_RETRY_ATTEMPTS,
    StepFailure,
    backoff,
    effective_attempts,
    next_retry,
)

FAILURE = StepFailure(error_type="NodeError")


def test_backoff_doubles_from_the_initial_interval() -> None:
    policy = RetryPolicy(initial_interval="1s", backoff_coefficient=2, max_interval="1h")
    schedule = [backoff(policy, attempt) for attempt in (1, 2, 3, 4)]
    assert schedule == [timedelta(seconds=s) for s in (1, 2, 4, 8)]


def test_backoff_is_capped_at_max_interval() -> None:
    policy = RetryPolicy(initial_interval="1s", backoff_coefficient=2, max_interval="5s")
    schedule = [backoff(policy, attempt) for attempt in (1, 2, 3, 4, 5)]
    assert schedule == [timedelta(seconds=s) for s in (1, 2, 4, 5, 5)]


def test_backoff_with_coefficient_one_is_constant() -> None:
    policy = RetryPolicy(initial_interval="250ms", backoff_coefficient=1)
    assert {backoff(policy, attempt) for attempt in range(1, 6)} == {timedelta(milliseconds=250)}


def test_next_retry_follows_the_backoff_until_attempts_run_out() -> None:
    policy = RetryPolicy(max_attempts=4, initial_interval="1s", backoff_coefficient=2)
    delays = [next_retry(policy, 4, attempt, FAILURE) for attempt in (1, 2, 3, 4)]
    assert delays == [timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=4), None]


def test_a_single_attempt_is_never_retried() -> None:
    assert next_retry(RetryPolicy(), 1, 1, FAILURE) is None


def test_attempts_beyond_the_maximum_are_not_retried() -> None:
    assert next_retry(RetryPolicy(max_attempts=3), 3, 5, FAILURE) is None


def test_non_retryable_flag_stops_retries() -> None:
    failure = StepFailure(error_type="NodeError", non_retryable=True)
    assert next_retry(RetryPolicy(max_attempts=5), 5, 1, failure) is None


def test_error_types_listed_as_non_retryable_stop_retries() -> None:
    policy = RetryPolicy(max_attempts=5, non_retryable=["HttpStatusError"])
    assert next_retry(policy, 5, 1, StepFailure(error_type="HttpStatusError")) is None
    assert next_retry(policy, 5, 1, StepFailure(error_type="NodeTimeout")) == timedelta(seconds=1)


def test_retry_after_longer_than_the_backoff_is_honoured() -> None:
    failure = StepFailure(error_type="HttpStatusError", retry_after=timedelta(seconds=30))
    assert next_retry(RetryPolicy(max_attempts=3), 3, 1, failure) == timedelta(seconds=30)


def test_retry_after_longer_than_max_interval_is_still_honoured() -> None:
    policy = RetryPolicy(max_attempts=3, max_interval="10s")
    failure = StepFailure(error_type="HttpStatusError", retry_after=timedelta(minutes=2))
    assert next_retry(policy, 3, 1, failure) == timedelta(minutes=2)


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    policy = RetryPolicy(max_attempts=5, initial_interval="10s")
    failure = StepFailure(error_type="HttpStatusError", retry_after=timedelta(seconds=1))
    assert next_retry(policy, 5, 2, failure) == timedelta(seconds=20)


def test_retry_after_does_not_override_non_retryable() -> None:
    failure = StepFailure(
        error_type="NodeError", non_retryable=True, retry_after=timedelta(seconds=5)
    )
    assert next_retry(RetryPolicy(max_attempts=3), 3, 1, failure) is None


def test_on_error_retry_without_a_policy_means_three_attempts() -> None:
    attempts = effective_attempts(RetryPolicy(), ErrorStrategy.RETRY, explicit=False)
    assert attempts == DEFAULT_RETRY_ATTEMPTS == 3


def test_on_error_retry_with_an_explicit_policy_keeps_its_attempts() -> None:
    assert effective_attempts(RetryPolicy(max_attempts=1), ErrorStrategy.RETRY, explicit=True) == 1
    assert effective_attempts(RetryPolicy(max_attempts=7), ErrorStrategy.RETRY, explicit=False) == 7


@pytest.mark.parametrize("strategy", [ErrorStrategy.STOP, ErrorStrategy.CONTINUE])
def test_other_strategies_use_the_policy_attempts(strategy: ErrorStrategy) -> None:
    assert effective_attempts(RetryPolicy(), strategy, explicit=False) == 3
    assert effective_attempts(RetryPolicy(max_attempts=1), strategy, explicit=True) == 1
    assert effective_attempts(RetryPolicy(max_attempts=4), strategy, explicit=True) == 4


def test_the_default_policy_is_three_attempts_with_exponential_backoff() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert [backoff(policy, attempt) for attempt in (1, 2, 7, 8)] == [
        timedelta(seconds=1),
        timedelta(seconds=2),
        timedelta(seconds=60),
        timedelta(seconds=60),
    ]


@pytest.mark.parametrize("strategy", list(ErrorStrategy))
def test_a_type_unsafe_to_repeat_gets_one_attempt_unless_a_policy_is_explicit(
    strategy: ErrorStrategy,
) -> None:
    assert effective_attempts(RetryPolicy(), strategy, explicit=False, repeatable=False) == 1
    explicit = effective_attempts(
        RetryPolicy(max_attempts=5), strategy, explicit=True, repeatable=False
    )
    assert explicit == 5


def test_retry_after_is_honoured_up_to_an_hour() -> None:
    from conveyor.engine.retry import RETRY_AFTER_CAP, StepFailure

    policy = RetryPolicy(max_attempts=3)
    asked_a_week = StepFailure("HttpStatusError", retry_after=timedelta(days=7))
    assert next_retry(policy, 3, 1, asked_a_week) == RETRY_AFTER_CAP == timedelta(hours=1)
    asked_five_minutes = StepFailure("HttpStatusError", retry_after=timedelta(minutes=5))
    assert next_retry(policy, 3, 1, asked_five_minutes) == timedelta(minutes=5)
