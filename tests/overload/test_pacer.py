"""The refusal pace, step by step on an explicit clock."""

from __future__ import annotations

import pytest

from spyglass.overload.pacer import BURST_S, MAX_PARK_S, Pacer


def test_refusals_within_the_pace_go_at_once_and_the_rest_are_parked() -> None:
    pacer: Pacer[str] = Pacer(rate=1000)
    burst = int(1000 * BURST_S)
    assert all(pacer.refuse_now(0.0) for _ in range(burst))  # a burst's worth at once
    assert not pacer.refuse_now(0.0)
    pacer.park("a", 0.0)
    pacer.park("b", 0.0)
    assert pacer.next_due_s(0.0) == pytest.approx(0.001)  # one token a millisecond
    assert pacer.due(0.0005) == []
    assert pacer.due(0.001) == ["a"]  # oldest first
    assert not pacer.refuse_now(0.003)  # tokens came, but "b" is owed one first
    assert pacer.due(0.003) == ["b"]
    assert pacer.next_due_s(0.003) is None and pacer.parked_total == 2


def test_no_request_waits_longer_than_the_longest_park_whatever_the_pace() -> None:
    pacer: Pacer[int] = Pacer(rate=1)
    assert pacer.refuse_now(0.0)  # the bucket holds one refusal
    for n in range(5):
        pacer.park(n, 0.1 * n)
    assert pacer.due(0.5) == []
    assert pacer.due(1.0) == [0]  # its token came after a second
    assert pacer.next_due_s(1.0) == pytest.approx(0.1)  # and 1 waited a second at 1.1
    assert pacer.due(MAX_PARK_S + 0.25) == [1, 2]
    assert pacer.due(10.0) == [3, 4]


def test_an_idle_pacer_refills_only_to_its_burst() -> None:
    pacer: Pacer[str] = Pacer(rate=100)
    assert pacer.refuse_now(0.0)
    sent = 0
    while pacer.refuse_now(100.0):
        sent += 1
    assert sent == int(100 * BURST_S)


def test_the_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Pacer(rate=0)
