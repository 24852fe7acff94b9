"""The wall clock that signature windows and receipt times read: one place, so tests pin it one way."""

import time


def now_ns() -> int:
    """Nanoseconds since the epoch (receipt ids keep the millisecond)."""
    return time.time_ns()


def now() -> float:
    """Seconds since the epoch."""
    return now_ns() / 1e9
