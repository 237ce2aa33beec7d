"""The one shape of a refusal: a short machine `reason` (what a charger, peer or client is told
and what metrics count) and a human `detail`."""

import re


def printable_detail(text) -> str:
    """A human detail as a signed reply to a charger carries it: printable ASCII (anything else
    becomes "?"), at most 255 characters, so that it fits the 1-byte length of a signed `str`."""
    return re.sub(r"[^\x20-\x7e]", "?", str(text or ""))[:255]


class ReasonedError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
