"""Unsigned integers that travel as decimal text, with a schema that states their exact range.

JSON numbers past 2**53 lose digits in most JSON parsers (JavaScript's among them), and so do
schema bounds such as `maximum: 2**256 - 1` in tools that read them as floats. The API sends
chain integers (uint64, uint256) as canonical decimal text instead; the pattern in the schema
accepts exactly the integers from the lower bound to 2**bits - 1, so a client or a tester that
generates from the schema gets only values the daemon takes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

_CANONICAL = re.compile(r"0|[1-9][0-9]*")


def pattern_up_to(maximum: int, *, positive: bool = False) -> str:
    """A regular expression for the canonical decimal text of 0 (or 1) to `maximum`."""
    digits = str(maximum)
    width = len(digits)
    alternatives = [] if positive else ["0"]
    if width > 1:  # every number with fewer digits
        alternatives.append("[1-9]" + (f"[0-9]{{0,{width - 2}}}" if width > 2 else ""))
    for i, digit in enumerate(digits):  # same width: equal up to i, then smaller at i
        lowest = 1 if i == 0 else 0
        if int(digit) > lowest:
            below = str(lowest) if int(digit) - 1 == lowest else f"[{lowest}-{int(digit) - 1}]"
            rest = width - i - 1
            alternatives.append(digits[:i] + below + (f"[0-9]{{{rest}}}" if rest else ""))
    if maximum > 0:
        alternatives.append(digits)
    return "^(?:" + "|".join(dict.fromkeys(alternatives)) + ")$"


class UintText:
    """`Annotated[str, UintText(256)]`: canonical decimal text of a uint256, range-checked.

    Python keeps it as the text it travels as (FastAPI validates a body as the Python values
    its JSON parses to, so a Python int could not be told from a JSON number); `int()` it
    where the number is used.
    """

    def __init__(self, bits: int, *, positive: bool = False) -> None:
        self.maximum = 2**bits - 1
        self.minimum = 1 if positive else 0
        self.name = f"{'Positive' if positive else ''}Uint{bits}"
        self.pattern = pattern_up_to(self.maximum, positive=positive)
        self.words = f"decimal text of an integer from {self.minimum} to 2^{bits}-1"

    def _check(self, text: str) -> str:
        if (
            len(text) > len(str(self.maximum))
            or not _CANONICAL.fullmatch(text)
            or not self.minimum <= int(text) <= self.maximum
        ):
            raise PydanticCustomError("uint_text", "expected {words}", {"words": self.words})
        return text

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            self._check, core_schema.str_schema(strict=True), ref=self.name
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        reference = handler(schema)
        target = handler.resolve_ref_schema(reference)
        target.update(type="string", pattern=self.pattern, description=self.words)
        return reference
