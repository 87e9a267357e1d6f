"""Chain times and durations as people write and read them: `3d`, `90m`, `2026-01-31`.

The chain counts unix seconds; everything the CLI prints or accepts goes through here, so a
deadline reads as a date and a delay as days wherever it appears.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")


class TimeFormatError(ValueError):
    """Text that is not a duration or a time; the message says what would be."""


def parse_duration(text: str | int) -> int:
    """Seconds from `3600`, `"90m"`, `"24h"`, `"3d"`, `"2w"`."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise TimeFormatError("a non-negative duration")
        return text
    match = _DURATION.match(str(text).lower())
    if match is None:
        raise TimeFormatError(
            f"{text!r} is not a duration: write seconds or a number with s, m, h, d or w (e.g. 3d)"
        )
    number, unit = match.groups()
    return int(number) * _UNITS[unit or "s"]


def format_duration(seconds: int) -> str:
    """`3d`, `1d 12h`, `90s`: the two largest units that are not zero."""
    if seconds <= 0:
        return "0s"
    parts = []
    rest = seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return " ".join(parts[:2])


def format_timestamp(timestamp: int) -> str:
    """A chain time as a UTC date: `2026-01-31 12:00:00 UTC`."""
    try:
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return f"unix time {timestamp}"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_time(text: str, *, now: int) -> int:
    """Unix seconds from an ISO date or date-time (UTC unless it says otherwise), or from
    `+DURATION` counted from `now` (the chain's latest block time)."""
    stripped = text.strip()
    if stripped.startswith("+"):
        return now + parse_duration(stripped[1:])
    try:
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TimeFormatError(
            f"{text!r} is not a time: write a date (2026-01-31), a date-time "
            "(2026-01-31T12:00:00Z) or +DURATION (e.g. +90d)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())
