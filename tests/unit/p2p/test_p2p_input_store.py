"""The input stores: per-job lock, owner, quotas, expiry, resuming, and restart (on disk)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from node.p2p.errors import UploadRefused
from node.p2p.identity import PeerId
from node.p2p.input_store import FileInputStore, InputStoreLimits, MemoryInputStore

ALICE, MALLORY = PeerId("12D3KooWalice"), PeerId("12D3KooWmallory")
JOB = b"\x01" * 32
KIB = 1024


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def stores(tmp_path: Path, clock: Clock, **limits: Any) -> list[Any]:
    lim = InputStoreLimits(**limits)
    return [FileInputStore(tmp_path / "inputs", lim, clock), MemoryInputStore(lim, clock)]


@pytest.mark.parametrize("kind", [0, 1], ids=["file", "memory"])
def test_one_writer_per_job_and_only_its_owner(tmp_path: Path, kind: int) -> None:
    clock = Clock()
    store = stores(tmp_path, clock)[kind]
    data = os.urandom(300 * KIB)
    digest = hashlib.sha256(data).digest()

    async def scenario() -> None:
        upload = await store.begin(JOB, ALICE, len(data), digest)
        # The red-team's second concurrent upload for the same job ended the process.
        with pytest.raises(UploadRefused, match="busy"):
            await store.begin(JOB, ALICE, len(data), digest)
        await upload.append(data[: 100 * KIB])
        await upload.close()
        # Another peer can neither resume, replace nor wipe Alice's upload.
        with pytest.raises(UploadRefused, match="not_owner"):
            await store.begin(JOB, MALLORY, 10, bytes(32))
        resumed = await store.begin(JOB, ALICE, len(data), digest)
        assert resumed.offset == 100 * KIB
        await resumed.append(data[100 * KIB :])
        assert await resumed.finish()
        await resumed.close()
        assert await store.sealed_input(JOB) == data
        await store.release(JOB)
        assert await store.sealed_input(JOB) is None

    trio.run(scenario)


@pytest.mark.parametrize("kind", [0, 1], ids=["file", "memory"])
def test_quotas_hold_reservations_until_the_upload_expires(tmp_path: Path, kind: int) -> None:
    clock = Clock()
    store = stores(tmp_path, clock, max_peer_bytes=1000, max_total_bytes=1500, partial_ttl_s=60)[
        kind
    ]

    async def scenario() -> None:
        # Announcing reserves: a partial upload that sends nothing still counts.
        first = await store.begin(b"\x01" * 32, MALLORY, 800, bytes(32))
        await first.close()
        with pytest.raises(UploadRefused, match="quota"):
            await store.begin(b"\x02" * 32, MALLORY, 300, bytes(32))
        other = await store.begin(b"\x03" * 32, ALICE, 600, bytes(32))
        await other.close()
        with pytest.raises(UploadRefused, match="store_full"):
            await store.begin(b"\x04" * 32, ALICE, 200, bytes(32))
        clock.now += 61  # both idle past the TTL: their reservations go
        again = await store.begin(b"\x02" * 32, MALLORY, 300, bytes(32))
        await again.close()
        assert store.held_bytes() == 300

    trio.run(scenario)


@pytest.mark.parametrize("kind", [0, 1], ids=["file", "memory"])
def test_a_wrong_hash_discards_and_an_overrun_is_refused(tmp_path: Path, kind: int) -> None:
    store = stores(tmp_path, Clock())[kind]

    async def scenario() -> None:
        upload = await store.begin(JOB, ALICE, 4, bytes(32))
        with pytest.raises(UploadRefused, match="overrun"):
            await upload.append(b"12345")
        await upload.append(b"1234")
        assert not await upload.finish()
        await upload.close()
        assert store.held_bytes() == 0

    trio.run(scenario)


def test_the_file_store_resumes_after_a_restart_and_keeps_bytes_on_disk(tmp_path: Path) -> None:
    clock = Clock()
    data = os.urandom(200 * KIB)
    digest = hashlib.sha256(data).digest()

    async def first_life() -> None:
        store = FileInputStore(tmp_path, clock=clock)
        upload = await store.begin(JOB, ALICE, len(data), digest)
        await upload.append(data[: 64 * KIB])
        await upload.close()

    async def second_life() -> None:
        store = FileInputStore(tmp_path, clock=clock)
        with pytest.raises(UploadRefused, match="not_owner"):
            await store.begin(JOB, MALLORY, len(data), digest)
        upload = await store.begin(JOB, ALICE, len(data), digest)
        assert upload.offset == 64 * KIB
        await upload.append(data[64 * KIB :])
        assert await upload.finish()  # the hash of the first life's bytes was rebuilt
        await upload.close()
        assert store.path_of(JOB) is not None
        assert store.path_of(JOB).read_bytes() == data

    trio.run(first_life)
    (tmp_path / "garbage.json").write_text("{not json")
    trio.run(second_life)
    assert not (tmp_path / "garbage.json").exists()
