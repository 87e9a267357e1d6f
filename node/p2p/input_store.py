"""Where a provider keeps uploaded inputs: sealed bytes, per-job locks, per-peer quotas.

An upload belongs to the peer that began it (its owner). While one stream writes a job's
input, no other stream can touch it (`busy`); another peer cannot resume, replace or wipe
it (`not_owner`). Every upload reserves its announced size against its owner's quota and
the store's total, so a peer that announces gigabytes and sends nothing holds nothing
beyond its quota, and only until its idle upload expires (the TTL).

`FileInputStore` is what a provider runs: the bytes (already HPKE-sealed to the enclave by
the client) go straight to disk, never accumulate in memory, and a partial upload survives
a dropped stream or a restart. `MemoryInputStore` is the fake for tests and benches; both
share the bookkeeping below and differ only in where bytes live.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

from node.p2p.errors import ConfigError, UploadRefused
from node.p2p.identity import PeerId

logger = logging.getLogger(__name__)

GIB = 1024**3
WallClock = Callable[[], float]


@dataclass(frozen=True)
class InputStoreLimits:
    # Disk the store may fill, all uploads together (reserved at their announced size).
    max_total_bytes: int = 64 * GIB
    # What one peer may hold at once, partial and complete uploads together.
    max_peer_bytes: int = 8 * GIB
    # An upload nobody has written to for this long is dropped (its reservation freed).
    partial_ttl_s: float = 900.0
    # A complete input not taken by a job within this long is dropped too.
    complete_ttl_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.max_peer_bytes <= self.max_total_bytes:
            raise ConfigError("input store: need 0 < max_peer_bytes <= max_total_bytes")
        if self.partial_ttl_s <= 0 or self.complete_ttl_s <= 0:
            raise ConfigError("input store TTLs must be positive")


class InputUpload(Protocol):
    """One writer's hold on one job's input; `close` releases the job for the next stream."""

    @property
    def offset(self) -> int:
        """Bytes already stored: where the writer resumes."""
        ...

    async def append(self, data: bytes) -> None: ...

    async def finish(self) -> bool:
        """Check the whole input against the announced SHA-256: True keeps it as complete,
        False discards it."""
        ...

    async def close(self) -> None: ...


class InputStore(Protocol):
    async def begin(self, job_id: bytes, peer: PeerId, size: int, sha256: bytes) -> InputUpload:
        """Take the job's lock and reserve its size; raises UploadRefused(reason)."""
        ...

    async def sealed_input(self, job_id: bytes) -> bytes | None:
        """The complete, hash-checked input, or None."""
        ...

    async def release(self, job_id: bytes) -> None:
        """Forget the job's input (the job ran or was cancelled)."""
        ...


@dataclass
class _Record:
    owner: PeerId
    size: int
    sha256: bytes
    stored: int
    complete: bool
    touched_at: float
    busy: bool = False
    # The running hash of `stored` bytes; None after a restart until recomputed.
    running: hashlib._Hash | None = None


class _UploadBook:
    """Owners, locks, quotas and expiry; subclasses keep the bytes."""

    def __init__(self, limits: InputStoreLimits, clock: WallClock) -> None:
        self._limits = limits
        self._clock = clock
        self._records: dict[bytes, _Record] = {}

    # --- storage, per subclass

    async def _prepare(self, job_id: bytes, record: _Record) -> None:
        """Make the bytes ready for appending (create or truncate to `record.stored`)."""
        raise NotImplementedError

    async def _write(self, job_id: bytes, record: _Record, data: bytes) -> None:
        raise NotImplementedError

    async def _rehash(self, job_id: bytes, record: _Record) -> hashlib._Hash:
        raise NotImplementedError

    async def _seal(self, job_id: bytes, record: _Record) -> None:
        """Make the complete input durable."""

    async def _persist(self, job_id: bytes, record: _Record) -> None:
        """Record owner and progress so a restart can resume."""

    async def _read(self, job_id: bytes) -> bytes:
        raise NotImplementedError

    def _delete(self, job_id: bytes) -> None:
        raise NotImplementedError

    # --- the interface

    async def begin(self, job_id: bytes, peer: PeerId, size: int, sha256: bytes) -> InputUpload:
        now = self._clock()
        self._expire(now)
        record = self._records.get(job_id)
        if record is not None:
            if record.busy:
                raise UploadRefused("busy")
            if record.owner != peer:
                raise UploadRefused("not_owner")
            if (record.size, record.sha256) != (size, sha256):
                # The owner announces other bytes for its job: start over.
                self._drop(job_id)
                record = None
        if record is None:
            held_by_peer = sum(r.size for r in self._records.values() if r.owner == peer)
            if held_by_peer + size > self._limits.max_peer_bytes:
                raise UploadRefused("quota")
            held = sum(r.size for r in self._records.values())
            if held + size > self._limits.max_total_bytes:
                raise UploadRefused("store_full")
            record = _Record(peer, size, sha256, 0, False, now, running=hashlib.sha256())
            self._records[job_id] = record
        record.busy = True
        record.touched_at = now
        try:
            await self._prepare(job_id, record)
            if record.running is None:
                record.running = await self._rehash(job_id, record)
            await self._persist(job_id, record)
        except BaseException:
            record.busy = False
            raise
        return _Upload(self, job_id, record)

    async def sealed_input(self, job_id: bytes) -> bytes | None:
        record = self._records.get(job_id)
        if record is None or not record.complete:
            return None
        return await self._read(job_id)

    async def release(self, job_id: bytes) -> None:
        record = self._records.get(job_id)
        if record is not None and not record.busy:
            self._drop(job_id)

    def held_bytes(self, peer: PeerId | None = None) -> int:
        """Reserved bytes, of one peer or of everyone (for metrics and tests)."""
        return sum(r.size for r in self._records.values() if peer is None or r.owner == peer)

    def _expire(self, now: float) -> None:
        for job_id, record in list(self._records.items()):
            ttl = self._limits.complete_ttl_s if record.complete else self._limits.partial_ttl_s
            if not record.busy and record.touched_at + ttl <= now:
                logger.info("input for job %s expired unused", job_id.hex())
                self._drop(job_id)

    def _drop(self, job_id: bytes) -> None:
        self._records.pop(job_id, None)
        self._delete(job_id)


class _Upload:
    def __init__(self, book: _UploadBook, job_id: bytes, record: _Record) -> None:
        self._book = book
        self._job_id = job_id
        self._record = record
        self._closed = False

    @property
    def offset(self) -> int:
        return self._record.stored

    async def append(self, data: bytes) -> None:
        record = self._record
        if self._closed or record.complete:
            raise UploadRefused("closed")
        if record.stored + len(data) > record.size:
            raise UploadRefused("overrun")
        try:
            await self._book._write(self._job_id, record, data)
        except BaseException:
            # Cancelled or failed mid-write: the running hash may hold bytes `stored` does
            # not count; the next writer recomputes it from what is on disk.
            record.running = None
            raise
        record.stored += len(data)
        record.touched_at = self._book._clock()

    async def finish(self) -> bool:
        record = self._record
        if record.complete:
            return True
        assert record.running is not None
        if record.stored != record.size or record.running.digest() != record.sha256:
            self._book._drop(self._job_id)
            return False
        await self._book._seal(self._job_id, record)
        record.complete = True
        record.running = None
        await self._book._persist(self._job_id, record)
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        record = self._record
        record.busy = False
        record.touched_at = self._book._clock()
        if self._book._records.get(self._job_id) is record and not record.complete:
            await self._book._persist(self._job_id, record)


class MemoryInputStore(_UploadBook):
    """An InputStore in memory: the fake for tests and benches (same locks and quotas)."""

    def __init__(
        self, limits: InputStoreLimits | None = None, clock: WallClock = time.time
    ) -> None:
        super().__init__(limits or InputStoreLimits(), clock)
        self._data: dict[bytes, bytearray] = {}

    async def _prepare(self, job_id: bytes, record: _Record) -> None:
        del self._data.setdefault(job_id, bytearray())[record.stored :]

    async def _write(self, job_id: bytes, record: _Record, data: bytes) -> None:
        self._data[job_id] += data
        assert record.running is not None
        # hashlib releases the GIL on large buffers: hashing overlaps with receiving.
        await trio.to_thread.run_sync(record.running.update, data)

    async def _rehash(self, job_id: bytes, record: _Record) -> hashlib._Hash:
        return hashlib.sha256(self._data[job_id])

    async def _read(self, job_id: bytes) -> bytes:
        return bytes(self._data[job_id])

    def _delete(self, job_id: bytes) -> None:
        self._data.pop(job_id, None)

    def stored(self, job_id: bytes) -> bytes:
        """Whatever is held for the job, complete or not (for tests)."""
        return bytes(self._data[job_id])


_PART = ".part"
_SEALED = ".sealed"
_META = ".json"
_HASH_BLOCK = 4 * 1024 * 1024


class FileInputStore(_UploadBook):
    """Uploads on disk under `directory`: `<job>.part` while partial, `<job>.sealed` once
    complete and hash-checked, `<job>.json` with owner and progress for resuming."""

    def __init__(
        self,
        directory: Path,
        limits: InputStoreLimits | None = None,
        clock: WallClock = time.time,
    ) -> None:
        super().__init__(limits or InputStoreLimits(), clock)
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._load()

    def _path(self, job_id: bytes, suffix: str) -> Path:
        return self._dir / (job_id.hex() + suffix)

    def _load(self) -> None:
        """Pick up uploads from before a restart; anything unreadable is deleted."""
        for meta in self._dir.glob("*" + _META):
            try:
                job_id = bytes.fromhex(meta.name[: -len(_META)])
                doc = json.loads(meta.read_text())
                record = _Record(
                    owner=PeerId(str(doc["owner"])),
                    size=int(doc["size"]),
                    sha256=bytes.fromhex(str(doc["sha256"])),
                    stored=0,
                    complete=bool(doc["complete"]),
                    touched_at=float(doc["touched_at"]),
                )
                data = self._path(job_id, _SEALED if record.complete else _PART)
                record.stored = min(data.stat().st_size, record.size)
                if len(job_id) != 32 or (record.complete and record.stored != record.size):
                    raise ValueError("inconsistent upload record")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("dropping unreadable upload %s: %s", meta.name, exc)
                stem = meta.name[: -len(_META)]
                for suffix in (_META, _PART, _SEALED):
                    (self._dir / (stem + suffix)).unlink(missing_ok=True)
                continue
            self._records[job_id] = record

    async def _prepare(self, job_id: bytes, record: _Record) -> None:
        path = self._path(job_id, _PART)
        stored = record.stored

        def truncate() -> None:
            with open(path, "ab") as f:
                f.truncate(stored)

        if not record.complete:
            await trio.to_thread.run_sync(truncate)

    async def _write(self, job_id: bytes, record: _Record, data: bytes) -> None:
        path, offset, running = self._path(job_id, _PART), record.stored, record.running
        assert running is not None

        def write_and_hash() -> None:
            fd = os.open(path, os.O_WRONLY)
            try:
                view = memoryview(data)
                while view:
                    written = os.pwrite(fd, view, offset + len(data) - len(view))
                    view = view[written:]
            finally:
                os.close(fd)
            running.update(data)

        await trio.to_thread.run_sync(write_and_hash)

    async def _rehash(self, job_id: bytes, record: _Record) -> hashlib._Hash:
        path = self._path(job_id, _SEALED if record.complete else _PART)
        stored = record.stored

        def hash_file() -> hashlib._Hash:
            running = hashlib.sha256()
            with open(path, "rb") as f:
                left = stored
                while left > 0:
                    block = f.read(min(_HASH_BLOCK, left))
                    if not block:
                        break
                    running.update(block)
                    left -= len(block)
            return running

        return await trio.to_thread.run_sync(hash_file)

    async def _seal(self, job_id: bytes, record: _Record) -> None:
        part, sealed = self._path(job_id, _PART), self._path(job_id, _SEALED)

        def sync_and_rename() -> None:
            fd = os.open(part, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(part, sealed)

        await trio.to_thread.run_sync(sync_and_rename)

    async def _persist(self, job_id: bytes, record: _Record) -> None:
        doc = {
            "owner": record.owner,
            "size": record.size,
            "sha256": record.sha256.hex(),
            "complete": record.complete,
            "touched_at": record.touched_at,
        }
        meta = self._path(job_id, _META)
        tmp = meta.with_suffix(".tmp")

        def write() -> None:
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, meta)

        await trio.to_thread.run_sync(write)

    async def _read(self, job_id: bytes) -> bytes:
        return await trio.to_thread.run_sync(self._path(job_id, _SEALED).read_bytes)

    def _delete(self, job_id: bytes) -> None:
        for suffix in (_META, _PART, _SEALED):
            self._path(job_id, suffix).unlink(missing_ok=True)

    def path_of(self, job_id: bytes) -> Path | None:
        """The complete input's file (for a runtime that maps it rather than reading it)."""
        record = self._records.get(job_id)
        return self._path(job_id, _SEALED) if record is not None and record.complete else None
