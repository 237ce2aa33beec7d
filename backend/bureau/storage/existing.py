"""Opening a chain another process wrote, to audit it: never creates a database, and opens a
SQLite file read-only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from .repository import Repository


class NoChain(ValueError):
    """The database does not exist, cannot be opened, or holds no block."""


def open_existing(path_or_url: str) -> Repository:
    """The repository of a stored chain, from a SQLite file path or a database URL."""
    path = None
    if "://" not in path_or_url:
        path = Path(path_or_url)
    elif path_or_url.startswith("sqlite:///"):
        path = Path(path_or_url.removeprefix("sqlite:///").split("?", 1)[0])
    if path is not None:
        if not path.is_file():
            raise NoChain(f"database {path} does not exist")
        url, shown = f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true", str(path)
    else:
        scheme, _, rest = path_or_url.partition("://")
        url, shown = path_or_url, f"{scheme}://{rest.rpartition('@')[2]}"  # (no password in a message)
    try:
        repo = Repository(url, create=False)
    except sa.exc.ArgumentError as e:
        raise NoChain(f"{shown} is not a database URL: {e}") from None
    try:
        height = repo.head_height() if sa.inspect(repo.engine).has_table("blocks") else 0
    except sa.exc.SQLAlchemyError as e:
        repo.close()
        cause = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise NoChain(f"cannot read {shown}: {cause}") from None
    if height == 0:
        repo.close()
        raise NoChain(f"{shown} holds no chain (no blocks)")
    return repo
