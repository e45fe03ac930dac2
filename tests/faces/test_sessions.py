"""The session tracker: 5 of the last 10 frames, sliding window, expiry, eviction."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from spyglass.errors import ConfigError, InvalidRequest
from spyglass.faces.sessions import MAX_SESSION_ID_LENGTH, SessionTracker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(
    tracker: SessionTracker, frames: Sequence[str | None], sid: str = "s1"
) -> list[str | None]:
    """The confirmed person after each frame."""
    return [tracker.observe("org", sid, person).confirmed_person for person in frames]


def test_confirmed_after_five_of_the_last_ten() -> None:
    tracker = SessionTracker()
    frames = ["ann", None, "ann", "bob", "ann", None, "ann", None, "ann"]
    confirmed = feed(tracker, frames)
    assert confirmed == [None] * 8 + ["ann"]


def test_window_slides() -> None:
    tracker = SessionTracker(window=10, needed=5)
    assert feed(tracker, ["ann"] * 5)[-1] == "ann"
    # five more frames without ann: she still has 5 of the last 10
    assert feed(tracker, [None, "bob", None, "bob", None]) == ["ann"] * 5
    # the sixth pushes her first frame out of the window
    assert feed(tracker, [None]) == [None]
    # bob reaches 5 of the last 10
    assert feed(tracker, ["bob", "bob", "bob"]) == [None, None, "bob"]


def test_tie_goes_to_the_person_seen_last() -> None:
    tracker = SessionTracker(window=10, needed=5)
    confirmed = feed(tracker, ["ann"] * 5 + ["bob"] * 5)
    assert confirmed[4:] == ["ann"] * 5 + ["bob"]


def test_new_session_id_when_none_given() -> None:
    tracker = SessionTracker()
    first = tracker.observe("org", None, "ann")
    second = tracker.observe("org", "", "ann")
    assert len(first.session_id) == 32 and first.session_id != second.session_id
    assert tracker.observe("org", first.session_id, "ann").session_id == first.session_id
    assert len(tracker) == 2


def test_sessions_are_separate_per_organisation() -> None:
    tracker = SessionTracker(window=4, needed=2)
    assert tracker.observe("a", "cam", "ann").confirmed_person is None
    assert tracker.observe("b", "cam", "ann").confirmed_person is None
    assert tracker.observe("a", "cam", "ann").confirmed_person == "ann"
    assert len(tracker) == 2


def test_sessions_expire() -> None:
    clock = FakeClock()
    tracker = SessionTracker(window=4, needed=2, ttl_seconds=60, clock=clock)
    tracker.observe("org", "old", "ann")
    clock.now += 30
    tracker.observe("org", "kept", "ann")
    clock.now += 30  # "old" idle 60 s: expired; "kept" idle 30 s
    assert tracker.observe("org", "kept", "ann").confirmed_person == "ann"
    assert len(tracker) == 1
    # "old" starts over: its earlier frame is gone
    assert tracker.observe("org", "old", "ann").confirmed_person is None
    clock.now += 59
    assert tracker.observe("org", "old", "ann").confirmed_person == "ann"


def test_least_recently_seen_session_is_evicted() -> None:
    tracker = SessionTracker(window=4, needed=2, max_sessions=3)
    for sid in ("s1", "s2", "s3"):
        tracker.observe("org", sid, "ann")
    tracker.observe("org", "s1", None)  # s1 is now the most recently seen
    tracker.observe("org", "s4", "ann")  # evicts s2
    assert len(tracker) == 3
    assert tracker.observe("org", "s1", "ann").confirmed_person == "ann"
    assert tracker.observe("org", "s3", "ann").confirmed_person == "ann"
    assert tracker.observe("org", "s2", "ann").confirmed_person is None  # new again; evicts s4
    for i in range(100):
        tracker.observe("org", f"x{i}", "ann")
    assert len(tracker) == 3


def test_session_id_length_is_bounded() -> None:
    tracker = SessionTracker()
    tracker.observe("org", "x" * MAX_SESSION_ID_LENGTH, None)
    with pytest.raises(InvalidRequest) as raised:
        tracker.observe("org", "x" * (MAX_SESSION_ID_LENGTH + 1), None)
    assert raised.value.field == "session_id"


@pytest.mark.parametrize(
    "options",
    [
        {"window": 0},
        {"window": 10, "needed": 11},
        {"needed": 0},
        {"ttl_seconds": 0},
        {"max_sessions": 0},
    ],
)
def test_bad_settings(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SessionTracker(**options)


def test_concurrent_frames_are_all_counted() -> None:
    tracker = SessionTracker(window=1001, needed=1000, max_sessions=10)
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait()
        for _ in range(250):
            tracker.observe("org", "shared", "ann")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tracker) == 1
    # all 1000 frames of ann were kept: she is confirmed until one slides out
    assert tracker.observe("org", "shared", None).confirmed_person == "ann"
    assert tracker.observe("org", "shared", None).confirmed_person is None
