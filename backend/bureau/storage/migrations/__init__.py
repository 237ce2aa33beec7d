"""Alembic migrations of the node's database; storage/migrate.py runs them (docs/storage.md)."""
