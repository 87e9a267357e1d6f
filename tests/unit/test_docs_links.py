"""The README and docs/ send readers only to files inside the repository, and those exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md"))]
# [text](target) links; and any path written as going up out of its folder.
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
UPWARD_PATH = re.compile(r"(?<![\w.])\.\./")


def test_the_docs_exist() -> None:
    names = {p.relative_to(REPOSITORY).as_posix() for p in DOCUMENTS}
    assert {"README.md", "docs/architecture.md", "docs/wiring.md"} <= names


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(document: Path) -> None:
    text = document.read_text()
    for target in MARKDOWN_LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        resolved = (document.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(REPOSITORY), f"{document.name}: {target} leaves the repo"
        assert resolved.exists(), f"{document.name}: {target} does not exist"
    assert not UPWARD_PATH.search(text), f"{document.name} names a path outside its folder"
