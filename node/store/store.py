"""The node store: one SQLite file, one connection, explicit transactions.

Writes happen on the trio thread: each is a few sub-millisecond statements on a local file,
cheaper than a thread hop. WAL with synchronous=NORMAL survives a crashed process; the one
write that must also survive a power cut, a signed transaction about to be broadcast, is
committed with synchronous=FULL (`durable=True`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, create_engine, delete, event, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from node.state.changes import StateChange
from node.state.codec import (
    decode_change,
    decode_effect,
    decode_snapshot,
    encode_change,
    encode_effect,
    encode_snapshot,
    to_fields,
)
from node.state.effects import Effect, Settlement
from node.state.errors import CodecError
from node.state.model import Job, NodeState, Step
from node.state.values import Address, BlockNumber, EffectId, Hash32, TxHash
from node.store import schema
from node.store.errors import StoreCorrupt, StoreError, StoreMismatch
from node.store.records import (
    ChainCursor,
    SeenBlock,
    TxAttempt,
    TxRecord,
    TxStatus,
    ViewEvent,
)

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@dataclass(frozen=True)
class StoredChange:
    seq: int
    change: StateChange


class Store:
    def __init__(self, path: Path, connection: Connection) -> None:
        self.path = path
        self._conn = connection
        self._in_transaction = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if absent) and migrate; a damaged file raises StoreCorrupt untouched."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > 0:
            _check_readable(path)
        engine = create_engine(f"sqlite:///{path}", poolclass=StaticPool)

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
            # The driver's implicit BEGIN would swallow PRAGMAs and hide transaction
            # boundaries; SQLAlchemy issues BEGIN itself below.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            conn = engine.connect()
            driver = conn.connection.driver_connection
            assert driver is not None
            # Each commit writes every page it touched to the WAL: small pages, fewer bytes.
            # (Takes effect only when the file is created.)
            driver.execute("PRAGMA page_size=2048")
            driver.execute("PRAGMA journal_mode=WAL")
            driver.execute("PRAGMA synchronous=NORMAL")
            driver.execute("PRAGMA busy_timeout=5000")
            # Checkpoints are where WAL mode fsyncs: fewer, larger ones keep commits cheap.
            driver.execute("PRAGMA wal_autocheckpoint=4000")
            if _schema_version(driver) != SCHEMA_HEAD:
                _migrate(conn, path)
        except SQLAlchemyError as exc:
            raise StoreCorrupt(
                f"store {path} cannot be opened ({_reason(exc)}); it was left untouched"
            ) from exc
        return cls(path, conn)

    def close(self) -> None:
        self._conn.close()
        self._conn.engine.dispose()

    @contextmanager
    def transaction(self, *, durable: bool = False) -> Iterator[Connection]:
        """One SQLite transaction; `durable` also survives a power cut once committed."""
        if self._conn.in_transaction():
            self._conn.commit()  # a read autobegun outside any transaction() block
        try:
            if durable:
                self._pragma("synchronous=FULL")
            self._in_transaction = True
            try:
                with self._conn.begin():
                    yield self._conn
            finally:
                self._in_transaction = False
                if durable:
                    self._pragma("synchronous=NORMAL")
        except DBAPIError as exc:
            raise StoreError(f"store {self.path}: {_reason(exc)}") from exc

    # ------------------------------------------------------------------ identity

    def bind_identity(self, role: str, address: Address) -> None:
        """Refuse to run a store written for another role or account."""
        wanted = f"{role}:{address}"
        with self.transaction() as conn:
            found = conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == "identity")
            ).scalar()
            if found is None:
                conn.execute(insert(schema.meta).values(key="identity", value=wanted))
            elif found != wanted:
                raise StoreMismatch(
                    f"store {self.path} belongs to {found.replace(':', ' ')}, "
                    f"but the config names {role} {address}: point store.path elsewhere"
                )

    # ------------------------------------------------------------------ state changes

    def append_change(self, conn: Connection, change: StateChange) -> int | None:
        """Record `change`; None when a change with its origin is already recorded."""
        cursor = self._driver(conn).execute(
            _INSERT_CHANGE_SQL,
            (change.origin, type(change).__name__, encode_change(change), time.time()),
        )
        return None if cursor.rowcount == 0 else int(cursor.lastrowid or 0)

    def save_step(
        self, conn: Connection, step: Step, seq: int, applied: Sequence[Settlement]
    ) -> None:
        """Record what a transition produced, in the caller's transaction."""
        driver = self._driver(conn)
        for job in step.jobs:
            driver.execute(
                _UPSERT_JOB_SQL,
                (
                    job.job_id,
                    job.status.value,
                    job.client,
                    job.provider,
                    str(job.price),
                    job.deadline,
                    job.input_hash,
                    job.output_hash,
                    job.error,
                    seq,
                    job_detail(job),
                ),
            )
        if step.approval is not None:
            approval = step.approval
            conn.execute(
                _UPSERT_APPROVAL,
                {
                    "request_id": approval.request_id,
                    "status": approval.status.value,
                    "provider": approval.provider,
                    "enclave_key": approval.enclave_key,
                    "reason": approval.reason,
                    "updated_seq": seq,
                    "peer_id": approval.peer_id,
                    "signature": approval.signature,
                },
            )
        for key in step.keys:
            conn.execute(
                _UPSERT_KEY,
                {
                    "enclave_key": key.enclave_key,
                    "boot_id": key.boot_id,
                    "workload": key.workload,
                    "workload_kind": key.workload_kind,
                    "tee_kind": key.tee_kind,
                    "measurement": key.measurement,
                    "hpke_public_key": key.hpke_public_key,
                    "status": key.status.value,
                    "expires_at": key.expires_at,
                    "reason": key.reason,
                    "updated_seq": seq,
                },
            )
        for effect in step.effects:
            driver.execute(
                _UPSERT_EFFECT_SQL,
                (effect.effect_id, type(effect).__name__, encode_effect(effect), seq),
            )
        for settlement in applied:
            driver.execute(
                _SETTLE_EFFECT_SQL,
                (
                    "done" if settlement.ok else "failed",
                    seq,
                    settlement.reason,
                    settlement.effect_id,
                ),
            )
        if step.offer is not None:
            offer = step.offer
            conn.execute(
                sqlite_insert(schema.offers)
                .values(
                    offer_key=f"{offer.provider}:{offer.nonce}",
                    provider=offer.provider,
                    nonce=str(offer.nonce),
                    price=str(offer.price),
                    valid_until=offer.valid_until,
                    tee_kind=offer.tee_kind,
                    peer_id=offer.peer_id,
                    body=offer.body,
                    seen_seq=seq,
                )
                .on_conflict_do_nothing()
            )
        if step.peer is not None:
            peer = step.peer
            statement = sqlite_insert(schema.peers).values(
                peer_id=peer.peer_id, addrs=peer.addrs, last_seen=peer.seen_at
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["peer_id"],
                    set_={"addrs": statement.excluded.addrs, "last_seen": peer.seen_at},
                )
            )

    def changes_after(self, seq: int, *, chunk: int = 5000) -> Iterator[StoredChange]:
        """Every recorded change after `seq`, in order, read in chunks."""
        last = seq
        while True:
            rows = self._conn.execute(
                select(
                    schema.state_changes.c.seq,
                    schema.state_changes.c.kind,
                    schema.state_changes.c.body,
                )
                .where(schema.state_changes.c.seq > last)
                .order_by(schema.state_changes.c.seq)
                .limit(chunk)
            ).all()
            self._end_read()
            if not rows:
                return
            for row_seq, kind, body in rows:
                try:
                    yield StoredChange(row_seq, decode_change(kind, body))
                except CodecError as exc:
                    raise StoreCorrupt(
                        f"store {self.path}: state change #{row_seq} cannot be read ({exc}); "
                        "it was left untouched"
                    ) from exc
            last = rows[-1][0]

    def change_count(self) -> int:
        count = self._conn.execute(select(func.count()).select_from(schema.state_changes)).scalar()
        self._end_read()
        return int(count or 0)

    def pending_effects(self) -> list[Effect]:
        rows = self._conn.execute(
            select(schema.effects.c.kind, schema.effects.c.body)
            .where(schema.effects.c.status == "pending")
            .order_by(schema.effects.c.created_seq)
        ).all()
        self._end_read()
        try:
            return [decode_effect(kind, body) for kind, body in rows]
        except CodecError as exc:
            raise StoreCorrupt(
                f"store {self.path}: a pending effect cannot be read ({exc})"
            ) from exc

    # ------------------------------------------------------------------ snapshots

    def save_snapshot(self, state: NodeState) -> None:
        with self.transaction() as conn:
            conn.execute(
                sqlite_insert(schema.snapshots)
                .values(seq=state.last_seq, body=encode_snapshot(state), created_at=time.time())
                .on_conflict_do_nothing()
            )
            # Older snapshots add nothing once a newer one exists.
            conn.execute(delete(schema.snapshots).where(schema.snapshots.c.seq < state.last_seq))

    def latest_snapshot(self) -> NodeState | None:
        row = self._conn.execute(
            select(schema.snapshots.c.seq, schema.snapshots.c.body)
            .order_by(schema.snapshots.c.seq.desc())
            .limit(1)
        ).first()
        self._end_read()
        if row is None:
            return None
        try:
            return decode_snapshot(row[1])
        except CodecError as exc:
            raise StoreCorrupt(
                f"store {self.path}: snapshot at #{row[0]} cannot be read ({exc})"
            ) from exc

    # ------------------------------------------------------------------ chain view

    def cursor(self) -> ChainCursor | None:
        rows = dict(
            self._conn.execute(
                select(schema.meta.c.key, schema.meta.c.value).where(
                    schema.meta.c.key.in_(("cursor_number", "cursor_hash"))
                )
            ).all()
        )
        self._end_read()
        if "cursor_number" not in rows:
            return None
        return ChainCursor(BlockNumber(int(rows["cursor_number"])), Hash32(rows["cursor_hash"]))

    def set_cursor(self, conn: Connection, cursor: ChainCursor) -> None:
        for key, value in (
            ("cursor_number", str(cursor.number)),
            ("cursor_hash", cursor.block_hash),
        ):
            statement = sqlite_insert(schema.meta).values(key=key, value=value)
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["key"], set_={"value": statement.excluded.value}
                )
            )
        self._remember_block(conn, SeenBlock(cursor.number, cursor.block_hash, True))
        # Blocks deep below the cursor can no longer be reorganised by any chain we accept.
        conn.execute(
            delete(schema.chain_blocks).where(
                schema.chain_blocks.c.confirmed, schema.chain_blocks.c.number < cursor.number - 256
            )
        )

    def seen_blocks(self) -> list[SeenBlock]:
        rows = self._conn.execute(
            select(
                schema.chain_blocks.c.number,
                schema.chain_blocks.c.hash,
                schema.chain_blocks.c.confirmed,
            ).order_by(schema.chain_blocks.c.number.desc())
        ).all()
        self._end_read()
        return [SeenBlock(BlockNumber(n), Hash32(h), bool(c)) for n, h, c in rows]

    def replace_view(
        self, after: BlockNumber, blocks: Sequence[SeenBlock], events: Sequence[ViewEvent]
    ) -> None:
        """Forget the unconfirmed view above `after` and store the given one instead."""
        with self.transaction() as conn:
            conn.execute(
                delete(schema.chain_blocks).where(
                    schema.chain_blocks.c.number > after, ~schema.chain_blocks.c.confirmed
                )
            )
            conn.execute(
                delete(schema.unconfirmed_events).where(
                    schema.unconfirmed_events.c.block_number > after
                )
            )
            for block in blocks:
                self._remember_block(conn, block)
            if events:
                conn.execute(
                    insert(schema.unconfirmed_events),
                    [
                        {
                            "block_number": e.block_number,
                            "log_index": e.log_index,
                            "block_hash": e.block_hash,
                            "tx_hash": e.tx_hash,
                            "kind": e.kind,
                            "body": e.body,
                        }
                        for e in events
                    ],
                )

    def forget_blocks_above(self, number: BlockNumber) -> None:
        """Roll back everything known about blocks above `number` (after a reorg)."""
        with self.transaction() as conn:
            conn.execute(delete(schema.chain_blocks).where(schema.chain_blocks.c.number > number))
            conn.execute(
                delete(schema.unconfirmed_events).where(
                    schema.unconfirmed_events.c.block_number > number
                )
            )

    def view_events(self) -> list[ViewEvent]:
        rows = self._conn.execute(
            select(schema.unconfirmed_events).order_by(
                schema.unconfirmed_events.c.block_number, schema.unconfirmed_events.c.log_index
            )
        ).all()
        self._end_read()
        return [
            ViewEvent(
                BlockNumber(r.block_number),
                r.log_index,
                Hash32(r.block_hash),
                TxHash(r.tx_hash),
                r.kind,
                r.body,
            )
            for r in rows
        ]

    def _remember_block(self, conn: Connection, block: SeenBlock) -> None:
        statement = sqlite_insert(schema.chain_blocks).values(
            number=block.number, hash=block.block_hash, confirmed=block.confirmed
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["number"],
                set_={"hash": statement.excluded.hash, "confirmed": statement.excluded.confirmed},
            )
        )

    # ------------------------------------------------------------------ transactions

    def transaction_for(self, effect: EffectId) -> TxRecord | None:
        row = self._conn.execute(
            select(schema.transactions).where(schema.transactions.c.effect_id == effect)
        ).first()
        if row is None:
            self._end_read()
            return None
        attempts = self._conn.execute(
            select(schema.tx_attempts)
            .where(schema.tx_attempts.c.effect_id == effect)
            .order_by(schema.tx_attempts.c.created_at)
        ).all()
        self._end_read()
        return TxRecord(
            effect_id=EffectId(row.effect_id),
            sender=Address(row.sender),
            nonce=row.nonce,
            status=TxStatus(row.status),
            attempts=tuple(
                TxAttempt(
                    TxHash(a.tx_hash),
                    bytes(a.raw),
                    int(a.max_fee),
                    int(a.priority_fee),
                    a.gas,
                    a.created_at,
                )
                for a in attempts
            ),
            mined_hash=TxHash(row.mined_hash) if row.mined_hash else None,
            block_number=BlockNumber(row.block_number) if row.block_number is not None else None,
            reason=row.reason,
        )

    def record_attempt(
        self, effect: EffectId, sender: Address, nonce: int, attempt: TxAttempt
    ) -> None:
        """Durably record signed bytes before they are broadcast: a restart resends them."""
        with self.transaction(durable=True) as conn:
            conn.execute(
                sqlite_insert(schema.transactions)
                .values(
                    effect_id=effect,
                    sender=sender,
                    nonce=nonce,
                    status=TxStatus.SIGNED.value,
                    mined_hash=None,
                    block_number=None,
                    reason="",
                    updated_at=attempt.created_at,
                )
                .on_conflict_do_nothing()
            )
            conn.execute(
                insert(schema.tx_attempts).values(
                    tx_hash=attempt.tx_hash,
                    effect_id=effect,
                    raw=attempt.raw,
                    max_fee=str(attempt.max_fee),
                    priority_fee=str(attempt.priority_fee),
                    gas=attempt.gas,
                    created_at=attempt.created_at,
                )
            )

    def finish_transaction(
        self,
        effect: EffectId,
        status: TxStatus,
        *,
        mined_hash: TxHash | None,
        block_number: BlockNumber | None,
        reason: str = "",
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                update(schema.transactions)
                .where(schema.transactions.c.effect_id == effect)
                .values(
                    status=status.value,
                    mined_hash=mined_hash,
                    block_number=block_number,
                    reason=reason,
                    updated_at=time.time(),
                )
            )

    def transactions_mined_above(self, sender: Address, number: BlockNumber) -> list[TxRecord]:
        """`sender`'s transactions mined (confirmed or reverted) above block `number`, by
        nonce: what a reorganisation down to `number` may have taken off the chain."""
        effects = self._conn.execute(
            select(schema.transactions.c.effect_id)
            .where(
                schema.transactions.c.sender == sender,
                schema.transactions.c.block_number > number,
                schema.transactions.c.status.in_(
                    (TxStatus.CONFIRMED.value, TxStatus.REVERTED.value)
                ),
            )
            .order_by(schema.transactions.c.nonce)
        ).all()
        self._end_read()
        found = [self.transaction_for(EffectId(row.effect_id)) for row in effects]
        return [record for record in found if record is not None]

    def highest_nonce(self, sender: Address) -> int | None:
        found = self._conn.execute(
            select(func.max(schema.transactions.c.nonce)).where(
                schema.transactions.c.sender == sender
            )
        ).scalar()
        self._end_read()
        return None if found is None else int(found)

    # ------------------------------------------------------------------ queries for the API

    def query(
        self, table: str, *, where: dict[str, str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Rows of a projection table as dicts (raw bytes shown as hex)."""
        target = _QUERYABLE[table]
        statement = select(target)
        for key, value in (where or {}).items():
            statement = statement.where(target.c[key] == value)
        order = target.c[_NEWEST_FIRST_BY[table]]
        rows = self._conn.execute(statement.order_by(order.desc()).limit(limit)).mappings().all()
        self._end_read()
        return [
            {k: ("0x" + v.hex() if isinstance(v, bytes) else v) for k, v in row.items()}
            for row in rows
        ]

    @staticmethod
    def _driver(conn: Connection) -> sqlite3.Connection:
        """The sqlite3 connection under `conn`, inside the same transaction.

        The per-change statements go straight to it: SQLAlchemy's per-statement overhead
        is most of a change's cost, and these few statements never change shape.
        """
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        return driver

    def _end_read(self) -> None:
        # SQLAlchemy autobegins on a bare read: end it so that no lock outlives the read.
        if not self._in_transaction and self._conn.in_transaction():
            self._conn.commit()

    def _pragma(self, setting: str) -> None:
        driver = self._conn.connection.driver_connection
        assert driver is not None
        driver.execute(f"PRAGMA {setting}")


_NEWEST_FIRST_BY = {
    "jobs": "updated_seq",
    "effects": "created_seq",
    "transactions": "updated_at",
    "offers": "seen_seq",
    "peers": "last_seen",
    "approvals": "updated_seq",
    "enclave_keys": "updated_seq",
}

_QUERYABLE = {
    "jobs": schema.jobs,
    "effects": schema.effects,
    "transactions": schema.transactions,
    "offers": schema.offers,
    "peers": schema.peers,
    "approvals": schema.approvals,
    "enclave_keys": schema.enclave_keys,
}


def _column_names(table: Table) -> list[str]:
    return [column.name for column in table.columns]


_INSERT_CHANGE_SQL = (
    "INSERT OR IGNORE INTO state_changes (origin, kind, body, recorded_at) VALUES (?, ?, ?, ?)"
)
_UPSERT_JOB_SQL = (
    "INSERT INTO jobs (job_id, status, client, provider, price, deadline, input_hash,"
    " output_hash, error, updated_seq, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (job_id) DO UPDATE SET status = excluded.status, client = excluded.client,"
    " provider = excluded.provider, price = excluded.price, deadline = excluded.deadline,"
    " input_hash = excluded.input_hash, output_hash = excluded.output_hash,"
    " error = excluded.error, updated_seq = excluded.updated_seq, detail = excluded.detail"
)
_JOB_COLUMNS = frozenset(
    {"job_id", "status", "client", "provider", "price", "deadline"}
    | {"input_hash", "output_hash", "error"}
)


def job_detail(job: Job) -> str:
    """The job's fields beyond its columns, as JSON."""
    fields = {k: v for k, v in to_fields(job).items() if k not in _JOB_COLUMNS}
    return json.dumps(fields, separators=(",", ":"))


_UPSERT_EFFECT_SQL = (
    "INSERT INTO effects (effect_id, kind, body, status, created_seq, settled_seq, reason)"
    " VALUES (?, ?, ?, 'pending', ?, NULL, '')"
    " ON CONFLICT (effect_id) DO UPDATE SET kind = excluded.kind, body = excluded.body,"
    " status = 'pending', created_seq = excluded.created_seq, settled_seq = NULL, reason = ''"
)
_SETTLE_EFFECT_SQL = (
    "UPDATE effects SET status = ?, settled_seq = ?, reason = ? WHERE effect_id = ?"
)
_upsert_approval = sqlite_insert(schema.approvals)
_UPSERT_APPROVAL = _upsert_approval.on_conflict_do_update(
    index_elements=["request_id"],
    set_={
        c: _upsert_approval.excluded[c]
        for c in _column_names(schema.approvals)
        if c != "request_id"
    },
)
_upsert_key = sqlite_insert(schema.enclave_keys)
_UPSERT_KEY = _upsert_key.on_conflict_do_update(
    index_elements=["enclave_key"],
    set_={
        c: _upsert_key.excluded[c] for c in _column_names(schema.enclave_keys) if c != "enclave_key"
    },
)


def _check_readable(path: Path) -> None:
    """Read-only look before anything writes: a damaged file must stay byte for byte as found."""
    try:
        probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = probe.execute("PRAGMA quick_check").fetchall()
            tables = {
                r[0] for r in probe.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(
            f"store {path} is not a readable SQLite database ({exc}); it was left untouched: "
            "restore it from a backup, or move it aside to start an empty store"
        ) from exc
    if verdict != [("ok",)]:
        problems = "; ".join(str(r[0]) for r in verdict[:3])
        raise StoreCorrupt(
            f"store {path} fails SQLite's integrity check ({problems}); it was left untouched"
        )
    if tables and "alembic_version" not in tables:
        raise StoreCorrupt(
            f"store {path} is a SQLite database but not a capa node store; it was left untouched"
        )


# The newest migration's revision. A store already there is opened without loading alembic
# (about 10 MB of a resident daemon); tests/unit/node/test_node_store.py holds this to the
# migrations' own head.
SCHEMA_HEAD = "0002"


def _schema_version(driver: Any) -> str | None:
    try:
        row = driver.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None  # a new file: no table yet
    return str(row[0]) if row else None


def _migrate(conn: Connection, path: Path) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from alembic.util.exc import CommandError

    alembic_cfg = AlembicConfig()
    alembic_cfg.set_main_option("script_location", str(_MIGRATIONS))
    alembic_cfg.attributes["connection"] = conn
    try:
        command.upgrade(alembic_cfg, "head")
    except CommandError as exc:
        raise StoreError(
            f"store {path} has a schema this capa does not know ({exc}); "
            "it was left untouched: run a newer capa"
        ) from exc
    if conn.in_transaction():
        conn.commit()


def _reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None)
    return str(original or exc).splitlines()[0]
