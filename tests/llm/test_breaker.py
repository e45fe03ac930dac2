"""The circuit breaker's states, driven by a clock the test moves."""

from __future__ import annotations

import pytest

from spyglass.llm.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_opens_after_consecutive_failures(clock: Clock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.retry_after() == 10.0
    clock.now += 4
    assert breaker.retry_after() == 6.0


def test_a_success_resets_the_count(clock: Clock) -> None:
    breaker = CircuitBreaker(2, 10.0, clock=clock)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 1


def test_half_open_lets_one_trial_through_and_success_closes(clock: Clock) -> None:
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.state == "half-open"
    assert breaker.allow()
    assert not breaker.allow()  # the trial is in flight
    assert breaker.retry_after() == 10.0
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.retry_after() == 0.0


def test_a_failed_trial_opens_again_for_a_full_period(clock: Clock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 15
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.retry_after() == 10.0
    assert not breaker.allow()


def test_release_frees_the_trial_slot(clock: Clock) -> None:
    breaker = CircuitBreaker(1, 10.0, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.release()
    assert breaker.state == "half-open"
    assert breaker.allow()


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0.0)
