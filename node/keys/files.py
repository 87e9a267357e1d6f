"""Secret files: created with mode 0600 from the first byte, never overwritten silently."""

from __future__ import annotations

import os
from pathlib import Path

from node.keys.errors import KeyFileExists


def write_secret_file(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileExists(f"{path} already exists: refusing to overwrite a key") from exc
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)  # in case a umask narrowed nothing but an ACL widened it


def replace_secret_file(path: Path, content: bytes) -> None:
    """Atomically replace `path` (for tokens, not keys)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    write_secret_file(temporary, content)
    os.replace(temporary, path)
