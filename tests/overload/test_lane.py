"""The lane's decisions, step by step on an explicit clock: no event loop, no sleeps."""

from __future__ import annotations

import math

import pytest

from spyglass.overload.lane import QUEUE_DELAY, QUEUE_FULL, Lane, Waiter


def lane(limit: int = 1, queue_max: int = 10) -> Lane:
    return Lane("search", limit=limit, queue_max=queue_max, target_s=0.005, interval_s=0.1)


def waiter(decision: Waiter | bool) -> Waiter:
    assert isinstance(decision, Waiter), decision
    return decision


def test_free_slots_admit_at_once_then_requests_wait_then_are_refused() -> None:
    gate = lane(limit=2, queue_max=2)
    assert gate.arrive(0.0) is True and gate.arrive(0.0) is True
    first, second = waiter(gate.arrive(0.001)), waiter(gate.arrive(0.002))
    assert first.expires == pytest.approx(0.101)  # a burst may wait a whole interval
    assert gate.full(0.003) and gate.arrive(0.003) is False
    assert gate.stats.shed[QUEUE_FULL] == 1
    assert (gate.in_flight, len(gate.waiting)) == (2, 2)
    assert second.expires > first.expires


def test_a_burst_is_served_first_come_first_served() -> None:
    gate = lane()
    gate.arrive(0.0)
    waiters = [waiter(gate.arrive(0.01 * i)) for i in range(1, 4)]
    assert gate.release(0.05, 0.05) is waiters[0]  # queue younger than the interval
    assert waiters[0].granted and gate.in_flight == 1
    assert gate.stats.delays[-1] == pytest.approx(0.04)


def test_a_persistent_queue_is_overloaded_and_serves_the_newest_with_short_waits() -> None:
    gate = lane()
    gate.arrive(0.0)
    oldest = waiter(gate.arrive(0.0))
    assert not gate.overloaded(0.099) and gate.overloaded(0.1)
    newest = waiter(gate.arrive(0.1))
    assert newest.expires == pytest.approx(0.105)  # target, not interval
    assert gate.release(0.101, 0.1) is newest  # last in, first out
    assert gate.release(0.102) is None and oldest.expires == -math.inf  # its wait ran out


def test_the_queue_holds_only_what_can_start_within_its_wait() -> None:
    gate = lane(limit=2, queue_max=100)
    assert gate.queue_cap(0.0) == 100  # no service time measured yet
    gate.arrive(0.0)
    gate.release(0.01, 0.01)  # service time 10 ms
    assert gate.queue_cap(0.01) == 20  # 2 slots x 100 ms / 10 ms
    gate.arrive(0.02), gate.arrive(0.02)
    waiter(gate.arrive(0.02))
    assert gate.overloaded(0.13) and gate.queue_cap(0.13) == 1  # 2 x 5 ms / 10 ms
    assert gate.full(0.13) and gate.arrive(0.13) is False


def test_expired_waiters_are_skipped_and_counted_once() -> None:
    gate = lane()
    gate.arrive(0.0)
    stale = waiter(gate.arrive(0.0))  # may wait until 0.1
    late = waiter(gate.arrive(0.1))  # overloaded by then: may wait until 0.105
    fresh = waiter(gate.arrive(0.104))
    # at 0.11 the waits of `late` and `stale` ran out, their timers not fired yet
    assert gate.release(0.11, 0.11) is None  # `fresh` too: 0.104 + 5 ms < 0.11
    assert gate.in_flight == 0 and not gate.waiting
    assert [w.expires for w in (stale, late, fresh)] == [-math.inf] * 3
    assert gate.stats.shed[QUEUE_DELAY] == 3
    for gone in (stale, late, fresh):
        gate.give_up(gone, 0.12)  # their timers fire now: nothing more to count
    assert gate.stats.shed[QUEUE_DELAY] == 3


def test_when_overloaded_the_newest_live_waiter_gets_the_slot() -> None:
    gate = lane()
    gate.arrive(0.0)
    stale = waiter(gate.arrive(0.0))
    fresh = waiter(gate.arrive(0.1))
    assert gate.release(0.102, 0.1) is fresh and fresh.granted
    assert not stale.granted and list(gate.waiting) == [stale]


def test_giving_up_leaves_the_queue_and_an_empty_queue_resets_overload() -> None:
    gate = lane()
    gate.arrive(0.0)
    left = waiter(gate.arrive(0.0))
    assert gate.overloaded(0.2)
    gate.give_up(left, 0.2)
    assert not gate.waiting and gate.stats.shed[QUEUE_DELAY] == 1
    again = waiter(gate.arrive(0.21))
    assert not gate.overloaded(0.21) and again.expires == pytest.approx(0.31)
    assert gate.release(0.22, 0.22) is again
    assert gate.release(0.23, 0.01) is None and gate.in_flight == 0


def test_no_queue_means_no_waiting_whatever_the_service_time() -> None:
    gate = lane(limit=1, queue_max=0)
    gate.arrive(0.0)
    gate.release(0.001, 0.001)
    assert gate.arrive(0.002) is True
    assert gate.queue_cap(0.002) == 0 and gate.full(0.002) and gate.arrive(0.002) is False


def test_service_time_is_a_running_mean() -> None:
    gate = lane(limit=4)
    for _ in range(4):
        gate.arrive(0.0)
    gate.release(0.0, 0.010)
    assert gate.service_s == pytest.approx(0.010)
    gate.release(0.0, 0.030)
    assert 0.010 < (gate.service_s or 0) < 0.030


def test_snapshot_reports_the_state() -> None:
    gate = lane()
    gate.arrive(0.0)
    waiter(gate.arrive(0.0))
    gate.arrive(0.0)
    state = gate.snapshot(0.0)
    assert state["limit"] == 1 and state["in_flight"] == 1 and state["queued"] == 2
    assert state["admitted"] == 1
    assert state["shed"] == {"queue_full": 0, "queue_delay": 0, "budget": 0}


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Lane("search", limit=0, queue_max=1)
    with pytest.raises(ValueError):
        Lane("search", limit=1, queue_max=1, target_s=0.2, interval_s=0.1)
