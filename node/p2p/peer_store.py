"""Peers we have talked to, kept across restarts so a node can rejoin without bootstrap."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from node.p2p.errors import ConfigError
from node.p2p.identity import PeerAddress

logger = logging.getLogger(__name__)

MAX_REMEMBERED_PEERS = 1000


def load_known_peers(path: Path) -> list[PeerAddress]:
    """Read the file; a missing or damaged file is an empty list, never a failed start."""
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable peer store %s: %s", path, exc)
        return []
    peers: list[PeerAddress] = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            peers.append(PeerAddress.parse(str(entry)))
        except ConfigError:
            logger.warning("ignoring bad peer store entry %r", entry)
    return peers[:MAX_REMEMBERED_PEERS]


def save_known_peers(path: Path, peers: list[PeerAddress]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    unique = list(dict.fromkeys(str(p) for p in peers))[:MAX_REMEMBERED_PEERS]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(unique, indent=1))
    os.replace(tmp, path)
