"""Amounts of the chain's currency as people write them: `0.01eth`, `5gwei`, or plain wei.

One parser and one formatter, used by the config, the CLI and everything they print, so an
amount reads the same wherever it appears.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

UNITS = {"wei": 1, "gwei": 10**9, "eth": 10**18, "ether": 10**18}
_AMOUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*$")


class AmountError(ValueError):
    """Text that is not an amount; the message says what would be."""


def parse_amount(text: str | int) -> int:
    """Wei from `123`, `"123"`, `"1.5eth"`, `"5 gwei"`; refuses fractions of a wei."""
    if isinstance(text, bool):
        raise AmountError("an amount, e.g. 0.01eth, 5gwei or 1000 (wei)")
    if isinstance(text, int):
        if text < 0:
            raise AmountError("a non-negative amount")
        return text
    match = _AMOUNT.match(str(text))
    if match is None:
        raise AmountError(f"{text!r} is not an amount: write e.g. 0.01eth, 5gwei or 1000 (wei)")
    number, unit = match.groups()
    scale = UNITS.get(unit.lower() or "wei")
    if scale is None:
        raise AmountError(f"unknown unit {unit!r}: use eth, gwei or wei")
    try:
        value = Decimal(number) * scale
    except InvalidOperation as exc:
        raise AmountError(f"{text!r} is not an amount") from exc
    if value != value.to_integral_value():
        raise AmountError(f"{text!r} is not a whole number of wei")
    return int(value)


def format_amount(wei: int) -> str:
    """`0.01 ETH`, `5 gwei`, `123 wei`: the largest unit that shows the amount exactly and short."""
    if wei == 0:
        return "0 ETH"
    if wei >= 10**15:
        return f"{format((Decimal(wei) / Decimal(10**18)).normalize(), 'f')} ETH"
    if wei % 10**9 == 0:
        return f"{wei // 10**9} gwei"
    return f"{wei} wei"
