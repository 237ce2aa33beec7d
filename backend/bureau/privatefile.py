"""Files that hold secrets or state another process reads while they change: each is replaced
whole, by rename of a temporary file of its own in the same directory, mode 0600, so a reader
sees the old file or the new one and never half of either; writers take turns under a lock file."""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


def write_private(path: Path, data: str | bytes, prepare: Callable[[str], None] | None = None) -> None:
    """Replace `path` by `data`, flushed to disk first; `prepare(temp path)` runs on the written
    temporary file before it takes the name (mosquitto_passwd hashing its passwords in place)."""
    fd, made = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(made, 0o600)
        if prepare is not None:
            prepare(made)
        os.replace(made, path)
    except BaseException:
        Path(made).unlink(missing_ok=True)
        raise


@contextmanager
def exclusive_lock(path: Path):
    """Hold an exclusive flock on the lock file `path` (made mode 0600 if missing) for the block:
    the node and an operator's command may change the same files at once."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
