"""Durations and chain times as people write and read them."""

from __future__ import annotations

import pytest

from node.amounts import format_amount, parse_amount
from node.times import (
    TimeFormatError,
    format_duration,
    format_timestamp,
    parse_duration,
    parse_time,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("90m", 5400), ("24h", 86400), ("3d", 259200), ("2w", 1209600), (" 5 s ", 5)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "3y", "-1d", "1.5h"])
def test_bad_durations_say_what_would_do(text: str) -> None:
    with pytest.raises(TimeFormatError, match="not a duration"):
        parse_duration(text)


def test_formatting() -> None:
    assert format_duration(3 * 86400) == "3d"
    assert format_duration(86400 + 12 * 3600 + 5) == "1d 12h"
    assert format_duration(0) == "0s"
    assert format_timestamp(1_767_225_600) == "2026-01-01 00:00:00 UTC"
    assert format_timestamp(2**70) == f"unix time {2**70}"


def test_times() -> None:
    assert parse_time("+1d", now=1000) == 1000 + 86400
    assert parse_time("2026-01-01", now=0) == 1_767_225_600
    assert parse_time("2026-01-01T01:00:00+01:00", now=0) == 1_767_225_600
    with pytest.raises(TimeFormatError, match="not a time"):
        parse_time("next week", now=0)


def test_amounts_read_back_as_written() -> None:
    for text, shown in (("0.01eth", "0.01 ETH"), ("5gwei", "5 gwei"), ("123", "123 wei")):
        assert format_amount(parse_amount(text)) == shown
