"""The store: atomic commits of a change with its effects, replay, snapshots, damaged files."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
import trio

from node.config.model import Role
from node.daemon.errors import StateDiverged
from node.daemon.state_service import StateService, rebuild_state
from node.metrics import Metrics
from node.state import changes as sc
from node.state.model import Identity, JobStatus
from node.state.values import Address, BlockNumber, EffectId, Hash32, JobId, TxHash
from node.store.errors import StoreCorrupt, StoreMismatch
from node.store.records import ChainCursor
from node.store.store import Store

ME = Identity(Role.PROVIDER, Address("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"))
CLIENT = Address("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC")
H = Hash32("0x" + "22" * 32)


def _job(i: int) -> JobId:
    return JobId("0x" + f"{i:064x}")


def _matched(i: int) -> sc.JobMatched:
    return sc.JobMatched(
        BlockNumber(i),
        H,
        TxHash("0x" + f"{i:064x}"),
        "k",
        _job(i),
        CLIENT,
        ME.address,
        10,
        99,
        H,
        H,
    )


def _service(path: Path, snapshot_every: int = 10_000) -> StateService:
    store = Store.open(path)
    return StateService(
        store, ME, rebuild_state(store, ME), Metrics(), snapshot_every=snapshot_every
    )


def test_changes_effects_and_cursor_commit_together_and_replay(tmp_path: Path) -> None:
    service = _service(tmp_path / "node.sqlite")
    cursor = ChainCursor(BlockNumber(7), H)
    withdrawals = [sc.WithdrawRequested(f"w{i}", 5 * i, ME.address) for i in (1, 2)]
    outcomes = service.apply_now([_matched(1), _matched(2), *withdrawals], cursor)
    assert [o.seq for o in outcomes] == [1, 2, 3, 4]
    again = service.apply_now([_matched(1)])
    assert again[0].seq is None  # same origin: refused, nothing done twice
    service.store.close()

    reopened = _service(tmp_path / "node.sqlite")
    assert reopened.store.cursor() == cursor
    assert set(reopened.state.pending) == {EffectId("withdraw:w1"), EffectId("withdraw:w2")}
    # A matched job waits for its client's input.
    assert reopened.state.jobs[_job(2)].status is JobStatus.ASSIGNED
    rows = reopened.store.query("effects", where={"status": "pending"})
    assert sorted(row["effect_id"] for row in rows) == ["withdraw:w1", "withdraw:w2"]


def test_a_failed_commit_leaves_nothing_half_written(tmp_path: Path) -> None:
    service = _service(tmp_path / "node.sqlite")
    service.apply_now([_matched(1)])
    # Another writer holds the database: the next commit cannot happen.
    blocker = sqlite3.connect(tmp_path / "node.sqlite", timeout=0)
    blocker.execute("PRAGMA busy_timeout=0")
    blocker.execute("BEGIN IMMEDIATE")
    service.store._conn.connection.driver_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
    with pytest.raises(StateDiverged):
        service.apply_now([_matched(2)])
    blocker.rollback()
    blocker.close()
    service.store.close()
    reopened = _service(tmp_path / "node.sqlite")
    assert set(reopened.state.jobs) == {_job(1)}  # job 2 neither recorded nor half recorded
    assert reopened.store.change_count() == 1


def test_snapshot_then_replay_gives_the_same_state(tmp_path: Path) -> None:
    service = _service(tmp_path / "node.sqlite", snapshot_every=100)
    for i in range(1, 251):
        service.apply_now([_matched(i)])
    expected = service.state
    service.store.close()
    store = Store.open(tmp_path / "node.sqlite")
    snapshot = store.latest_snapshot()
    assert snapshot is not None and snapshot.last_seq == 200
    assert rebuild_state(store, ME) == expected


def test_a_damaged_file_is_refused_and_left_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    service = _service(path)
    service.apply_now([_matched(1)])
    service.store.close()
    raw = bytearray(path.read_bytes())
    raw[0:16] = b"definitely not!!"  # the SQLite header
    path.write_bytes(bytes(raw))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreCorrupt) as caught:
        Store.open(path)
    assert "left untouched" in str(caught.value) and "\n" not in str(caught.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_foreign_sqlite_file_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(StoreCorrupt, match="not a capa node store"):
        Store.open(path)


def test_a_store_of_another_account_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "node.sqlite")
    store.bind_identity("provider", ME.address)
    with pytest.raises(StoreMismatch, match=r"store\.path"):
        store.bind_identity("client", CLIENT)


def test_the_service_loop_drains_its_queue_when_inputs_close(tmp_path: Path) -> None:
    service = _service(tmp_path / "node.sqlite")

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            for i in range(1, 21):
                await service.submit([_matched(i)])
            service.close_inputs()  # run() returns once all 20 are committed

    trio.run(scenario)
    assert service.store.change_count() == 20


def test_the_schema_head_is_the_migrations_head_and_an_up_to_date_store_skips_alembic(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from node.store import store as store_module

    config = AlembicConfig()
    config.set_main_option("script_location", str(store_module._MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == store_module.SCHEMA_HEAD

    path = tmp_path / "node.sqlite"
    Store.open(path).close()  # created and migrated
    opened = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from node.store.store import Store; "
            f"Store.open(Path({str(path)!r})).close(); print('alembic' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert opened.stdout.strip() == "False"
