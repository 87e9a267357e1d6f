"""The node store's first schema: state changes, effects, projections, transactions, chain view.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state_changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String, nullable=False, unique=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "effects",
        sa.Column("effect_id", sa.String, primary_key=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("created_seq", sa.Integer, nullable=False),
        sa.Column("settled_seq", sa.Integer),
        sa.Column("reason", sa.Text, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String, primary_key=True),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("client", sa.String),
        sa.Column("provider", sa.String),
        sa.Column("price", sa.String, nullable=False),
        sa.Column("deadline", sa.Integer, nullable=False),
        sa.Column("input_hash", sa.String),
        sa.Column("output_hash", sa.String),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("updated_seq", sa.Integer, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "approvals",
        sa.Column("request_id", sa.String, primary_key=True),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("enclave_key", sa.String, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("updated_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "offers",
        sa.Column("offer_key", sa.String, primary_key=True),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("nonce", sa.String, nullable=False),
        sa.Column("price", sa.String, nullable=False),
        sa.Column("valid_until", sa.Integer, nullable=False),
        sa.Column("tee_kind", sa.Integer, nullable=False),
        sa.Column("peer_id", sa.String, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("seen_seq", sa.Integer, nullable=False),
    )
    op.create_index("ix_offers_provider", "offers", ["provider"])
    op.create_table(
        "peers",
        sa.Column("peer_id", sa.String, primary_key=True),
        sa.Column("addrs", sa.Text, nullable=False),
        sa.Column("last_seen", sa.Integer, nullable=False),
    )
    op.create_table(
        "transactions",
        sa.Column("effect_id", sa.String, primary_key=True),
        sa.Column("sender", sa.String, nullable=False),
        sa.Column("nonce", sa.Integer, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("mined_hash", sa.String),
        sa.Column("block_number", sa.Integer),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("sender", "nonce", name="uq_transactions_sender_nonce"),
    )
    op.create_table(
        "tx_attempts",
        sa.Column("tx_hash", sa.String, primary_key=True),
        sa.Column("effect_id", sa.String, sa.ForeignKey("transactions.effect_id"), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("max_fee", sa.String, nullable=False),
        sa.Column("priority_fee", sa.String, nullable=False),
        sa.Column("gas", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_tx_attempts_effect_id", "tx_attempts", ["effect_id"])
    op.create_table(
        "chain_blocks",
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("hash", sa.String, nullable=False),
        sa.Column("confirmed", sa.Boolean, nullable=False),
    )
    op.create_table(
        "unconfirmed_events",
        sa.Column("block_number", sa.Integer, primary_key=True),
        sa.Column("log_index", sa.Integer, primary_key=True),
        sa.Column("block_hash", sa.String, nullable=False),
        sa.Column("tx_hash", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "snapshots",
        "meta",
        "unconfirmed_events",
        "chain_blocks",
        "tx_attempts",
        "transactions",
        "peers",
        "offers",
        "approvals",
        "jobs",
        "effects",
        "state_changes",
    ):
        op.drop_table(table)
