"""Simulated time.

Core objects:
    Clock: maps step numbers to simulated datetimes (step 0 is the initial state).
    parse_duration: "90s", "15m", "1h", "1d", "1w" or a number of seconds -> timedelta.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a step duration such as ``"1h"``, ``"30m"`` or ``3600`` (seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(
                f"{value!r} is not a duration; write a number and a unit, e.g. 30s, 15m, 1h, 1d, 1w"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("a step must last longer than 0 seconds")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Clock:
    """Simulated time: ``start`` is the time of step 0; each step adds ``step_duration``."""

    start: datetime
    step_duration: timedelta

    def time(self, step: int) -> datetime:
        """The simulated datetime at the end of ``step``."""
        return self.start + step * self.step_duration

    def epoch(self, step: int) -> float:
        """The simulated time of ``step`` in seconds since 1970 (naive times read as UTC)."""
        return (self.time(step) - datetime(1970, 1, 1)).total_seconds()

    def first_step_at(self, when: datetime) -> int:
        """The first step (at least 1) whose simulated time is at or after ``when``."""
        seconds = (when - self.start).total_seconds()
        return max(1, int(-(-seconds // self.step_duration.total_seconds())))

    def hour(self, step: int) -> int:
        """Hour of day (0-23) of the simulated time of ``step``."""
        return self.time(step).hour
