"""Approval requests held on disk, by request id, until their check is decided.

The state machine records only a request's id, provider, key and evidence hash; the evidence
itself (up to 64 KiB) waits here for the CheckEvidence handler, which may run again after a
restart. Bounded: at most `max_held` files; decided requests are removed to make room, and
when every held request is still being checked a new one is refused (the provider asks
again later), so a flood of requests cannot fill the disk.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from node.p2p.approve_protocol import ApprovalRequest
from node.p2p.errors import P2PError
from node.state.values import Hash32

MAX_HELD = 256


class RequestsFull(Exception):
    """Every slot holds a request whose check is not decided yet."""


@dataclass(frozen=True)
class HeldRequest:
    peer_id: str
    request: ApprovalRequest


class HeldRequests:
    def __init__(self, directory: Path, max_held: int = MAX_HELD) -> None:
        self.directory = directory
        self._max_held = max_held

    def _path(self, request_id: Hash32) -> Path:
        # Request ids are 0x + 64 hex digits, made here from the request's hash: a file name.
        return self.directory / f"{request_id}.json"

    def held(self) -> list[Hash32]:
        try:
            names = [p.name for p in self.directory.iterdir() if p.suffix == ".json"]
        except FileNotFoundError:
            return []
        return [Hash32(name.removesuffix(".json")) for name in names]

    def put(self, request_id: Hash32, held: HeldRequest, decided: Callable[[Hash32], bool]) -> None:
        """Keep a request (atomically: a crash leaves it whole or absent); removes decided
        requests first, raises RequestsFull when no slot can be freed."""
        path = self._path(request_id)
        if path.exists():
            return
        current = self.held()
        if len(current) >= self._max_held:
            for old in current:
                if decided(old):
                    self.discard(old)
            if len(self.held()) >= self._max_held:
                raise RequestsFull(f"{self._max_held} approval requests are being checked")
        document = {"peer": held.peer_id, "request": held.request.to_json()}
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(document, file, separators=(",", ":"))
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, request_id: Hash32) -> HeldRequest | None:
        """The request, or None when it is not held (or its file is not a request: a damaged
        file is as good as none, and the check then refuses for want of evidence)."""
        try:
            document = json.loads(self._path(request_id).read_text(encoding="utf-8"))
            return HeldRequest(
                str(document["peer"]), ApprovalRequest.from_json(document["request"])
            )
        except (OSError, ValueError, KeyError, TypeError, P2PError):
            return None

    def discard(self, request_id: Hash32) -> None:
        self._path(request_id).unlink(missing_ok=True)

    def prune(self, decided: Callable[[Hash32], bool]) -> int:
        """Remove every decided request; the number removed."""
        removed = 0
        if self.directory.is_dir():
            for partial in self.directory.glob("*.tmp"):  # a write cut short by a crash
                partial.unlink(missing_ok=True)
        for request_id in self.held():
            if decided(request_id):
                self.discard(request_id)
                removed += 1
        return removed
