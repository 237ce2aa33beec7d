"""Brings a node's database to the schema of this code: Alembic's `upgrade head`, run from the
package (no alembic.ini) at every node start and by `bureau db upgrade`.

A database made by release 0.1 (create_all, no alembic_version) is adopted first: what that
release would have made and is missing is made, and it is stamped as revision 0001."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .migrations import schema_0001

RELEASE_0_1 = "0001"
log = logging.getLogger(__name__)
logging.getLogger("alembic").setLevel(logging.WARNING)  # it logs each context it opens; upgrade() logs the outcome


class MigrationError(RuntimeError):
    """The database cannot be brought to this code's schema as it stands."""


def config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(config()).get_current_head()


def _revision(conn: sa.Connection) -> str | None:
    rev = MigrationContext.configure(conn).get_current_revision()
    if rev is None and sa.inspect(conn).has_table("blocks"):
        return RELEASE_0_1 if sa.inspect(conn).has_table("authz_holds") else None
    return rev


def current(engine: sa.Engine) -> str | None:
    """The revision the database is at (a database of release 0.1 is at 0001); None when empty."""
    with engine.connect() as conn:
        return _revision(conn)


def upgrade(engine: sa.Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """(revision before, revision after). All of it in one transaction, also on SQLite."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:
            # a table rebuild drops tables that others refer to: keys are checked once, at the end
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            conn.exec_driver_sql("BEGIN")  # pysqlite would run the DDL outside any transaction
        try:
            before = _revision(conn)
            if MigrationContext.configure(conn).get_current_revision() is None and sa.inspect(conn).has_table("blocks"):
                schema_0001.metadata.create_all(conn)  # checkfirst: only what the release lacked
                command.stamp(config(conn), RELEASE_0_1)
            command.upgrade(config(conn), revision)
            if sqlite:
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    tables = sorted({row[0] for row in broken})
                    raise MigrationError(f"{len(broken)} rows name rows that do not exist (tables {', '.join(tables)})")
            after = _revision(conn)
            conn.commit()
            if after != before:
                log.info("database schema upgraded from %s to %s", before or "nothing", after)
        except BaseException:
            conn.rollback()
            raise
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    return before, after
