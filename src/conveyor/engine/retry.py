"""Retry decisions as pure functions of the policy, the attempt and the error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from conveyor.engine.definition import ErrorStrategy, RetryPolicy

DEFAULT_RETRY_ATTEMPTS = 3


@dataclass(frozen=True)
class StepFailure:
    """What the runner knows of a failed attempt."""

    error_type: str
    non_retryable: bool = False
    retry_after: timedelta | None = None


RETRY_AFTER_CAP = timedelta(hours=1)


def backoff(policy: RetryPolicy, attempt: int) -> timedelta:
    """Delay before attempt ``attempt + 1``: initial * coefficient^(attempt-1), capped."""
    cap = policy.max_interval.total_seconds()
    try:
        seconds = policy.initial_interval.total_seconds() * policy.backoff_coefficient ** (
            attempt - 1
        )
    except OverflowError:
        seconds = cap
    return timedelta(seconds=min(seconds, cap))


def effective_attempts(
    policy: RetryPolicy, strategy: ErrorStrategy, explicit: bool, repeatable: bool = True
) -> int:
    """The policy's attempts; one for a node type unsafe to repeat unless a policy is
    given explicitly; ``on_error: retry`` never means fewer than three."""
    if not explicit and not repeatable:
        return 1
    if strategy == ErrorStrategy.RETRY and not explicit and policy.max_attempts == 1:
        return DEFAULT_RETRY_ATTEMPTS
    return policy.max_attempts


def next_retry(
    policy: RetryPolicy, max_attempts: int, attempt: int, failure: StepFailure
) -> timedelta | None:
    """The delay before the next attempt, or None when the step has failed for good."""
    if failure.non_retryable or failure.error_type in policy.non_retryable:
        return None
    if attempt >= max_attempts:
        return None
    if failure.retry_after is not None:
        # A server's Retry-After is honoured up to an hour: one answering "in a week" does
        # not park the step that long.
        asked = min(failure.retry_after, RETRY_AFTER_CAP)
        return max(asked, backoff(policy, attempt))
    return backoff(policy, attempt)
