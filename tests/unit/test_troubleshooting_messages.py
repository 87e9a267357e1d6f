"""Every message docs/troubleshooting.md quotes is still one the code prints.

Each ```text block of the page is a message; `<...>` marks a part that varies. The code's
string literals (f-strings and %-style log templates, with their placeholders matching
anything) are searched in the message, and every letter and digit of it outside the
`<...>` parts must fall in a literal part of some string that matches there (punctuation
between two varying parts may come from a separator too short to search for). A reworded message in
the code, or a page that quotes words the code never prints, fails with the line to fix.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
PAGE = REPOSITORY / "docs" / "troubleshooting.md"
CODE = [REPOSITORY / "node", REPOSITORY / "proofs"]
BLOCK = re.compile(r"```text\n(.*?)\n```", re.DOTALL)
VARYING = re.compile(r"<[^<>]*>")
PERCENT = re.compile(r"%[-#0-9.]*[sdrfix]")
# Shorter literals (": ", " ") would cover words by accident.
MIN_LITERAL = 3


def _parts(node: ast.expr) -> list[str | None] | None:
    """A string expression as literal parts and None for each placeholder."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        pieces: list[str | None] = []
        for i, text in enumerate(PERCENT.split(node.value)):
            if i:
                pieces.append(None)
            pieces.append(text)
        return pieces
    if isinstance(node, ast.JoinedStr):
        return [
            v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else None
            for v in node.values
        ]
    return None


@cache
def templates() -> tuple[re.Pattern[str], ...]:
    found: set[str] = set()
    for root in CODE:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                parts = _parts(node) if isinstance(node, ast.expr) else None
                if not parts or sum(len(p) for p in parts if p) < MIN_LITERAL:
                    continue
                found.add(
                    "".join(f"({re.escape(p)})" if p else "(?:.+?)" for p in parts if p != "")
                )
    return tuple(re.compile(t, re.DOTALL) for t in sorted(found))


def uncovered(message: str) -> str:
    """The characters of `message` outside `<...>` that no literal of the code accounts for."""
    covered = [False] * len(message)
    for span in VARYING.finditer(message):
        covered[span.start() : span.end()] = [True] * (span.end() - span.start())
    for pattern in templates():
        for match in pattern.finditer(message):
            for group in range(1, (pattern.groups or 0) + 1):
                start, end = match.span(group)
                if start >= 0:
                    covered[start:end] = [True] * (end - start)
    return "".join(
        c if not ok and c.isalnum() else "·" for c, ok in zip(message, covered, strict=True)
    )


def quoted_messages() -> list[str]:
    return BLOCK.findall(PAGE.read_text())


def test_the_page_quotes_messages() -> None:
    assert len(quoted_messages()) >= 20


@pytest.mark.parametrize("message", quoted_messages())
def test_each_quoted_message_is_printed_by_the_code(message: str) -> None:
    left = uncovered(message)
    assert set(left) <= {"·"}, (
        f"docs/troubleshooting.md quotes text no message in node/ or proofs/ prints "
        f"(the letters not dotted out):\n{left}"
    )


def test_a_reworded_message_is_caught() -> None:
    printed = "bubblewrap (bwrap) is not installed: run tools/system-deps.sh (apt-get install "
    assert set(uncovered(printed + "bubblewrap)")) == {"·"}
    assert set(uncovered(printed + "bwrap)")) != {"·"}
    assert set(uncovered(printed.replace("installed", "found") + "bubblewrap)")) != {"·"}
