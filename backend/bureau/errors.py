"""The one shape of a refusal: a short machine `reason` (what a charger, peer or client is told
and what metrics count) and a human `detail`."""


class ReasonedError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
