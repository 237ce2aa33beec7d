"""Waiting for a condition in a test that talks to real processes: poll, never assert on timing."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 60.0, *, poll: float = 0.1,
             step: Callable[[], object] | None = None) -> T:
    """The first truthy value of `condition()`, asked every `poll` s (or after each `step()`)
    for up to `timeout` s; past that the test fails with `what`."""
    deadline = time.monotonic() + timeout
    while not (got := condition()):
        assert time.monotonic() < deadline, what
        step() if step else time.sleep(poll)
    return got
