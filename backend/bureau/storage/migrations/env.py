"""Alembic's entry: runs on the connection storage/migrate.py hands over in the config."""

from alembic import context

from bureau.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
