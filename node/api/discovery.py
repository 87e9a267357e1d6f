"""Where a running daemon publishes its API: the URL file next to the token file."""

from __future__ import annotations

from pathlib import Path


def url_file_for(token_file: Path) -> Path:
    return token_file.with_name("api.url")
