"""Durable state: SQLite through SQLAlchemy, schema managed by Alembic, migrated on open."""
