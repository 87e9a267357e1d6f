"""Alembic environment: migrations run in-process on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from node.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("node.store migrations run through node.store.store.Store.open only")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
