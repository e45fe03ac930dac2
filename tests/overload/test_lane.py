"""The lane's decisions, step by step on an explicit clock: no event loop, no sleeps."""

from __future__ import annotations

import math

import pytest

from spyglass.overload.lane import (
    FIT_INTERVALS,
    HOLD_INTERVALS,
    QUEUE_DELAY,
    QUEUE_FULL,
    Lane,
    Waiter,
)


def lane(limit: int = 1, queue_max: int = 10) -> Lane:
    return Lane("search", limit=limit, queue_max=queue_max, target_s=0.005, interval_s=0.1)


def waiter(decision: Waiter | bool) -> Waiter:
    assert isinstance(decision, Waiter), decision
    return decision


def overflow(gate: Lane, now: float) -> None:
    """Fill the queue to its cap and refuse one more: the lane is then overloaded."""
    while (decision := gate.arrive(now)) is not False:
        assert isinstance(decision, Waiter) or decision is True
    assert gate.overloaded(now)


def test_free_slots_admit_at_once_then_requests_wait_then_are_refused() -> None:
    gate = lane(limit=2, queue_max=2)
    assert gate.arrive(0.0) is True and gate.arrive(0.0) is True
    first, second = waiter(gate.arrive(0.001)), waiter(gate.arrive(0.002))
    assert first.expires == pytest.approx(0.101)  # a burst may wait a whole interval
    assert not gate.overloaded(0.003)
    assert gate.arrive(0.003) is False
    assert gate.stats.shed[QUEUE_FULL] == 1 and gate.overloaded(0.003)
    assert (gate.in_flight, len(gate.waiting)) == (2, 2)
    assert second.expires > first.expires


def test_requests_let_in_but_not_yet_at_admission_fill_the_lane_too() -> None:
    gate = lane(limit=1, queue_max=3)
    gate.entered = 4  # the door let 4 in this loop iteration; none has reached admission
    assert gate.in_flight == 0 and not gate.waiting
    assert gate.turn_away(0.0)  # one running and three waiting is all it holds
    assert gate.stats.shed[QUEUE_FULL] == 1
    gate.entered = 3
    assert not gate.turn_away(0.2)
    gate.entered = 0  # another server: no protocol counts, the lane's own counts decide
    assert gate.arrive(0.3) is True
    assert not gate.turn_away(0.3)


def test_a_burst_is_served_first_come_first_served() -> None:
    gate = lane()
    gate.arrive(0.0)
    waiters = [waiter(gate.arrive(0.01 * i)) for i in range(1, 4)]
    assert gate.release(0.05, 0.05) is waiters[0]  # the queue never overflowed
    assert waiters[0].granted and gate.in_flight == 1
    assert gate.stats.delays[-1] == pytest.approx(0.04)


def test_a_steady_queue_that_never_overflows_is_served_in_order_without_refusals() -> None:
    gate = lane(limit=1, queue_max=40)
    gate.arrive(0.0)
    clients = [waiter(gate.arrive(0.0)) for _ in range(30)]  # 31 clients, one slot
    now = 0.0
    for _ in range(300):  # each answered client sends again at once: the queue stays at 30
        now += 0.001
        granted = gate.release(now, 0.001)
        assert granted is clients[0]
        clients = [*clients[1:], waiter(gate.arrive(now))]
    assert not gate.overloaded(now) and sum(gate.stats.shed.values()) == 0


def test_an_overflowing_queue_is_overloaded_and_serves_the_newest_with_short_waits() -> None:
    gate = lane(limit=1, queue_max=3)
    gate.arrive(0.0)
    oldest = waiter(gate.arrive(0.0))
    waiter(gate.arrive(0.0)), waiter(gate.arrive(0.0))
    assert not gate.overloaded(0.001)
    assert gate.arrive(0.001) is False  # full: the queue overflows
    assert gate.overloaded(0.001) and not gate.overloaded(0.101)  # for one interval
    newest = waiter(gate.arrive(0.002)) if len(gate.waiting) < 3 else None
    assert newest is None  # still full
    granted = gate.release(0.003, 0.003)
    assert granted is not oldest and granted is not None and granted.enqueued == 0.0
    assert gate.release(0.004) is not oldest  # last in, first out


def test_once_overloaded_waiters_older_than_target_are_refused_at_once() -> None:
    gate = lane(limit=1, queue_max=10)
    gate.arrive(0.0)
    burst = [waiter(gate.arrive(0.001 * i)) for i in range(10)]  # may wait 100 ms each
    assert gate.arrive(0.0095) is False  # overflow: overloaded from now on
    assert gate.turn_away(0.0125) is False  # the stale ones make way
    dropped = gate.take_dropped()
    assert dropped == burst[:8]  # those that came before 0.0075 waited over 5 ms
    assert all(w.expires == -math.inf and not w.granted for w in dropped)
    assert gate.stats.shed[QUEUE_DELAY] == 8 and list(gate.waiting) == burst[8:]
    fresh = waiter(gate.arrive(0.0126))
    assert fresh.expires == pytest.approx(0.0176)  # target, not interval
    assert gate.release(0.013, 0.013) is fresh  # the newest first
    assert gate.take_dropped() == [burst[8]] and list(gate.waiting) == [burst[9]]


def test_the_queue_holds_only_what_can_start_within_its_wait() -> None:
    gate = lane(limit=2, queue_max=100)
    assert gate.queue_cap(0.0) == 100  # no service time measured yet
    gate.arrive(0.0)
    gate.release(0.01, 0.01)  # service time 10 ms
    assert gate.queue_cap(0.01) == 20  # 2 slots x 100 ms / 10 ms
    gate.arrive(0.02), gate.arrive(0.02)
    overflow(gate, 0.02)
    assert gate.queue_cap(0.02) == 1  # 2 x 5 ms / 10 ms once overloaded
    assert gate.turn_away(0.021) and gate.stats.shed[QUEUE_FULL] == 2


def test_expired_waiters_are_skipped_and_counted_once() -> None:
    gate = lane()
    gate.arrive(0.0)
    stale = waiter(gate.arrive(0.0))  # may wait until 0.1
    fresh = waiter(gate.arrive(0.05))  # until 0.15
    # at 0.12 the wait of `stale` ran out, its timer not fired yet
    assert gate.release(0.12, 0.12) is fresh
    assert stale.expires == -math.inf and gate.stats.shed[QUEUE_DELAY] == 1
    gate.give_up(stale, 0.13)  # its timer fires now: nothing more to count
    assert gate.stats.shed[QUEUE_DELAY] == 1


def test_giving_up_leaves_the_queue() -> None:
    gate = lane()
    gate.arrive(0.0)
    left = waiter(gate.arrive(0.0))
    gate.give_up(left, 0.05, expired=False)  # its client went away
    assert not gate.waiting and gate.stats.shed[QUEUE_DELAY] == 1 and not gate.overloaded(0.05)
    again = waiter(gate.arrive(0.06))
    assert again.expires == pytest.approx(0.16)
    assert gate.release(0.07, 0.07) is again
    assert gate.release(0.08, 0.01) is None and gate.in_flight == 0


def test_no_queue_means_no_waiting_whatever_the_service_time() -> None:
    gate = lane(limit=1, queue_max=0)
    gate.arrive(0.0)
    gate.release(0.001, 0.001)
    assert gate.arrive(0.002) is True
    assert gate.queue_cap(0.002) == 0 and gate.turn_away(0.002)
    assert gate.arrive(0.002) is False and gate.stats.shed[QUEUE_FULL] == 2


def test_service_time_is_a_running_mean() -> None:
    gate = lane(limit=4)
    for _ in range(4):
        gate.arrive(0.0)
    gate.release(0.0, 0.010)
    assert gate.service_s == pytest.approx(0.010)
    gate.release(0.0, 0.030)
    assert 0.010 < (gate.service_s or 0) < 0.012


def test_when_every_open_connection_fits_the_queue_holds_them_all() -> None:
    gate = lane(limit=1, queue_max=40)
    gate.arrive(0.0)
    gate.release(0.05, 0.05)  # 50 ms each: two could start within the interval
    assert gate.queue_cap(0.05) == 2
    gate.census.connections = 41  # but one running and 40 waiting are all there can be
    assert gate.queue_cap(0.05) == 40
    gate.census.connections = 42
    assert gate.queue_cap(0.05) == 2


def test_a_wait_of_a_whole_interval_counts_as_an_overflow_a_short_one_does_not() -> None:
    gate = lane(limit=1, queue_max=10)
    gate.arrive(0.0)
    slow = waiter(gate.arrive(0.0))
    gate.give_up(slow, 0.1)  # its timer: it waited the whole interval
    assert gate.overloaded(0.1) and gate.stats.shed[QUEUE_DELAY] == 1
    short = waiter(gate.arrive(0.1))  # overloaded: may wait 5 ms
    gate.give_up(short, 0.106)
    assert gate.last_overflow == 0.1  # a 5 ms wait running out renews nothing


def resend_at_once(gate: Lane, waiting: list[Waiter], now: float, until: float) -> list[float]:
    """Clients that send again as soon as they are answered or refused, one release per
    ms, until ``until``; when each refusal came."""
    refused_at: list[float] = []
    senders = 0
    while now < until:
        now += 0.001
        granted = gate.release(now)
        dropped = gate.take_dropped()
        waiting[:] = [w for w in waiting if w is not granted and w not in dropped]
        expired = [w for w in waiting if w.expires < now]
        for w in expired:
            gate.give_up(w, now)
        waiting[:] = [w for w in waiting if w not in expired]
        refused_at += [now] * (len(dropped) + len(expired))
        senders += 1 + len(dropped) + len(expired)
        for _ in range(senders):
            decision = gate.arrive(now)
            if decision is False:
                refused_at.append(now)
                continue
            if isinstance(decision, Waiter):
                waiting.append(decision)
            senders -= 1
    return refused_at


def slowed_by_refusals() -> tuple[Lane, list[Waiter]]:
    """A lane with one request running and 15 waiting, overloaded since 0.001, where
    refusals have slowed the service from 1 ms to a running mean of 20 ms."""
    gate = lane(limit=1, queue_max=64)
    for _ in range(40):
        gate.arrive(0.0)
        gate.release(0.001, 0.001)
    assert gate.arrive(0.001) is True
    waiting = [waiter(gate.arrive(0.001)) for _ in range(15)]
    gate._overflow(0.001)  # a stall made the queue overflow once: overloaded
    gate.service_s = 0.02
    assert gate._cap(0.005, gate.service_s) == 1
    return gate, waiting


def test_a_long_overload_reopens_the_burst_queue_and_resending_clients_then_fit() -> None:
    gate, waiting = slowed_by_refusals()
    gate.census.connections = 16  # 16 clients that each send again at once
    refused_at = resend_at_once(gate, waiting, 0.001, 8.0)
    hold = gate.interval_s * HOLD_INTERVALS
    assert refused_at and hold <= max(refused_at) < hold + 0.2  # refused until it reopened
    assert not gate.overloaded(8.0) and len(waiting) == 15  # then served in order


def test_an_overload_with_more_connections_than_the_burst_queue_holds_stays() -> None:
    gate, waiting = slowed_by_refusals()
    gate.census.connections = 66  # one running and 64 waiting cannot be all of them
    refused_at = resend_at_once(gate, waiting, 0.001, 8.0)
    assert gate.overloaded(8.0) and max(refused_at) > 7.9  # never reopened


def test_each_try_of_the_burst_queue_that_overflows_doubles_the_wait_for_the_next() -> None:
    gate, _ = slowed_by_refusals()
    tries: list[float] = []
    now = 0.001
    while now < 40.0:  # a real excess: the queue overflows every 10 ms, tries included
        now += 0.01
        opened = gate.reopened_until
        gate._overflow(now)
        if gate.reopened_until != opened and gate.reopened_until > now:
            tries.append(round(now, 2))
    hold = gate.interval_s * HOLD_INTERVALS
    waits = [b - a for a, b in zip([0.0, *tries], tries, strict=False)]
    assert waits == pytest.approx([hold, 2 * hold, 4 * hold], abs=0.2)
    assert gate.overloaded(now) and gate.hold_intervals == 8 * HOLD_INTERVALS
    gate._overflow(now + 1.0)  # after a calm second, a new overload starts from the first
    assert gate.hold_intervals == HOLD_INTERVALS


def test_a_population_that_fits_waits_its_turn_without_making_the_lane_overloaded() -> None:
    gate = lane(limit=1, queue_max=50)
    gate.arrive(0.0)
    gate.release(0.002, 0.002)
    gate.census.connections = 40
    gate.arrive(0.002)
    slow = waiter(gate.arrive(0.002))
    assert slow.expires == pytest.approx(0.002 + gate.interval_s * FIT_INTERVALS)
    gate.give_up(slow, 0.102)  # a stall: its wait ran out, yet every client fits
    assert gate.stats.shed[QUEUE_DELAY] == 1 and not gate.overloaded(0.102)
    gate.census.connections = 60  # more clients than it holds: the same wait overflows
    again = waiter(gate.arrive(0.2))
    gate.give_up(again, 0.31)
    assert gate.overloaded(0.31)


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
