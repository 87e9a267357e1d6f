"""JSON nesting bound for the documents `proofs` decodes (PCS collateral, sim and GPU evidence).

CPython's JSON decoder recurses in C once per nesting level; with a raised recursion limit a
deeply nested body overflows the C stack and kills the process instead of raising. Evidence
and collateral come from untrusted peers, so the depth is measured first, without recursion.
"""

from __future__ import annotations

import re
from itertools import accumulate

# Real PCS documents nest 7 levels deep, sim and GPU evidence 1.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_nesting_depth(text: str) -> int:
    """Deepest bracket nesting outside strings (an upper bound on what a decoder recurses)."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(_STEP[c] for c in brackets), default=0)


def nested_too_deep(text: str) -> bool:
    return json_nesting_depth(text) > MAX_JSON_DEPTH
