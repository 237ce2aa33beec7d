"""The soak's fault schedule: a seeded sequence of episodes, each one fault held for a while.

Pure: it draws from its own `random.Random(seed)` and touches nothing, so a seed names one
schedule. Episodes run one after another and the next starts only when the last fault's node
has recovered, so at most one bureau (f = 1 of 4) is ever down, paused or partitioned.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NODE_FAULTS = ("kill", "pause", "partition")  # each takes one bureau out
KINDS = NODE_FAULTS + ("broker_restart",)
# A node fault outlasts the first consensus round's timeouts (3 s to propose, then 1 s each
# to prevote and precommit), so the other three must commit without it.
HOLD_S = {"kill": (5.0, 10.0), "pause": (5.0, 10.0), "partition": (5.0, 10.0), "broker_restart": (0.5, 3.0)}
GAP_S = (1.0, 4.0)


@dataclass(frozen=True)
class Episode:
    kind: str  # one of KINDS
    target: int | None  # index of the bureau for a node fault, None for the broker
    hold_s: float  # how long the fault lasts before it is undone
    gap_s: float  # quiet time before the fault starts


class FaultPlanner:
    """Rounds of every fault kind in a shuffled order, each on a random bureau, so that even a
    short soak meets every kind; `next()` returns the next episode."""

    def __init__(self, seed: int, nodes: int, kinds: tuple[str, ...] = KINDS) -> None:
        self.rng = random.Random(seed)
        self.nodes = nodes
        self.kinds = kinds
        self._round: list[str] = []
        self.handed_out = 0

    @property
    def first_round_done(self) -> bool:
        """Every kind has been handed out at least once."""
        return self.handed_out >= len(self.kinds)

    def next(self) -> Episode:
        self.handed_out += 1
        if not self._round:
            self._round = list(self.kinds)
            self.rng.shuffle(self._round)
        kind = self._round.pop()
        target = self.rng.randrange(self.nodes) if kind in NODE_FAULTS else None
        lo, hi = HOLD_S[kind]
        return Episode(kind, target, round(self.rng.uniform(lo, hi), 2), round(self.rng.uniform(*GAP_S), 2))


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]
