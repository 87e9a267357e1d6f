"""The wired daemon: each job's full record, the provider's enclave keys, approval answers.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        # Everything a job record holds beyond the columns above, as JSON (stage, provider
        # tried, receipt, output digest...): shown by the API, never queried by.
        jobs.add_column(sa.Column("detail", sa.Text, nullable=False, server_default="{}"))
    with op.batch_alter_table("approvals") as approvals:
        approvals.add_column(sa.Column("peer_id", sa.String, nullable=False, server_default=""))
        approvals.add_column(sa.Column("signature", sa.String, nullable=False, server_default=""))
    op.create_table(
        "enclave_keys",
        sa.Column("enclave_key", sa.String, primary_key=True),
        sa.Column("boot_id", sa.String, nullable=False),
        sa.Column("workload", sa.String, nullable=False),
        sa.Column("workload_kind", sa.String, nullable=False),
        sa.Column("tee_kind", sa.Integer, nullable=False),
        sa.Column("measurement", sa.String, nullable=False),
        sa.Column("hpke_public_key", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("updated_seq", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("enclave_keys")
    with op.batch_alter_table("approvals") as approvals:
        approvals.drop_column("signature")
        approvals.drop_column("peer_id")
    with op.batch_alter_table("jobs") as jobs:
        jobs.drop_column("detail")
