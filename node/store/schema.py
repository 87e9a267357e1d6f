"""The tables. Alembic migrations create them; this module is the Python side's map of them."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Amounts are uint256: kept as decimal text, since SQLite integers stop at 2**63.
# jobs and effects are WITHOUT ROWID and carry no secondary index: each change writes a row
# of each, and every extra B-tree is one more page written per commit. Their status queries
# (the API, pending effects at start) scan, which is cheap next to that.

state_changes = Table(
    "state_changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("origin", String, nullable=False, unique=True),
    Column("kind", String, nullable=False),
    Column("body", Text, nullable=False),
    Column("recorded_at", Float, nullable=False),
    sqlite_autoincrement=True,
)

effects = Table(
    "effects",
    metadata,
    Column("effect_id", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String, nullable=False),  # pending | done | failed
    Column("created_seq", Integer, nullable=False),
    Column("settled_seq", Integer),
    Column("reason", Text, nullable=False, default=""),
    sqlite_with_rowid=False,
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String, primary_key=True),
    Column("status", String, nullable=False),
    Column("client", String),
    Column("provider", String),
    Column("price", String, nullable=False),
    Column("deadline", Integer, nullable=False),
    Column("input_hash", String),
    Column("output_hash", String),
    Column("error", Text, nullable=False),
    Column("updated_seq", Integer, nullable=False),
    Column("detail", Text, nullable=False),
    sqlite_with_rowid=False,
)

approvals = Table(
    "approvals",
    metadata,
    Column("request_id", String, primary_key=True),
    Column("status", String, nullable=False),
    Column("provider", String, nullable=False),
    Column("enclave_key", String, nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_seq", Integer, nullable=False),
    Column("peer_id", String, nullable=False),
    Column("signature", String, nullable=False),
)

enclave_keys = Table(
    "enclave_keys",
    metadata,
    Column("enclave_key", String, primary_key=True),
    Column("boot_id", String, nullable=False),
    Column("workload", String, nullable=False),
    Column("workload_kind", String, nullable=False),
    Column("tee_kind", Integer, nullable=False),
    Column("measurement", String, nullable=False),
    Column("hpke_public_key", String, nullable=False),
    Column("status", String, nullable=False),
    Column("expires_at", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("updated_seq", Integer, nullable=False),
)

offers = Table(
    "offers",
    metadata,
    Column("offer_key", String, primary_key=True),  # provider:nonce
    Column("provider", String, nullable=False, index=True),
    Column("nonce", String, nullable=False),
    Column("price", String, nullable=False),
    Column("valid_until", Integer, nullable=False),
    Column("tee_kind", Integer, nullable=False),
    Column("peer_id", String, nullable=False),
    Column("body", Text, nullable=False),
    Column("seen_seq", Integer, nullable=False),
)

peers = Table(
    "peers",
    metadata,
    Column("peer_id", String, primary_key=True),
    Column("addrs", Text, nullable=False),
    Column("last_seen", Integer, nullable=False),
)

transactions = Table(
    "transactions",
    metadata,
    Column("effect_id", String, primary_key=True),
    Column("sender", String, nullable=False),
    Column("nonce", Integer, nullable=False),
    Column("status", String, nullable=False),
    Column("mined_hash", String),
    Column("block_number", Integer),
    Column("reason", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("sender", "nonce", name="uq_transactions_sender_nonce"),
)

tx_attempts = Table(
    "tx_attempts",
    metadata,
    Column("tx_hash", String, primary_key=True),
    Column("effect_id", String, ForeignKey("transactions.effect_id"), nullable=False, index=True),
    Column("raw", LargeBinary, nullable=False),
    Column("max_fee", String, nullable=False),
    Column("priority_fee", String, nullable=False),
    Column("gas", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)

chain_blocks = Table(
    "chain_blocks",
    metadata,
    Column("number", Integer, primary_key=True),
    Column("hash", String, nullable=False),
    Column("confirmed", Boolean, nullable=False),
)

unconfirmed_events = Table(
    "unconfirmed_events",
    metadata,
    Column("block_number", Integer, primary_key=True),
    Column("log_index", Integer, primary_key=True),
    Column("block_hash", String, nullable=False),
    Column("tx_hash", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("body", Text, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
