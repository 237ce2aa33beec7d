"""Persistence of blocks, certificates and the state they produce (SQLAlchemy 2)."""

from .repository import Repository  # noqa: F401
