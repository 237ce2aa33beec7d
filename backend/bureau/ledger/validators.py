"""The bureau validators of a chain, as its genesis names them: who signs blocks, with what key
and power, where its peers and API listen; and the thresholds and proposer order consensus
derives from their powers.

Quorum is "more than 2/3 of the total voting power", the round-skip threshold "more than
1/3" (at least one correct validator when at most f < n/3 of the power is faulty).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import Iterable, Iterator

MAX_VALIDATORS = 1000
MAX_VALIDATOR_ID = 64                   # bytes of UTF-8
MAX_POWER = 1 << 40
MAX_PROPOSER_PERIOD = 1 << 16


@dataclass(frozen=True, slots=True)
class Validator:
    """One validator: `id` names it in certificates and peer handshakes, `public_key` (32-byte
    Ed25519) checks its votes, `power` weighs them; `address` (host:port of its peer listener)
    and `api` (its HTTP base URL) are where to reach it ("" when the genesis does not say)."""
    id: str
    public_key: bytes
    power: int = 1
    address: str = ""
    api: str = ""

    def __post_init__(self) -> None:
        vid = self.id
        if not isinstance(vid, str) or not vid or len(vid.encode("utf-8")) > MAX_VALIDATOR_ID:
            raise ValueError(f"validator id must be a non-empty string of at most {MAX_VALIDATOR_ID} bytes, got {vid!r}")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise ValueError(f"validator {vid}: public key must be 32 bytes")
        if isinstance(self.power, bool) or not isinstance(self.power, int) or not 1 <= self.power <= MAX_POWER:
            raise ValueError(f"validator {vid}: power must be an integer in 1..2^40")
        if not isinstance(self.address, str) or not isinstance(self.api, str):
            raise ValueError(f"validator {vid}: address and api must be strings")

    @classmethod
    def from_doc(cls, doc: dict) -> "Validator":
        """From a genesis entry {"id", "public_key" (hex), "power" (default 1), "address", "api"}."""
        return cls(doc["id"], bytes.fromhex(doc["public_key"]), doc.get("power", 1),
                   doc.get("address", ""), doc.get("api", ""))


class ValidatorSet:
    """The validators of a chain, in genesis order (a validator's index is its position)."""

    __slots__ = ("validators", "total_power", "_by_id", "_by_key", "_quorum", "_third", "_schedule")

    def __init__(self, validators: Iterable[Validator]) -> None:
        vals = tuple(validators)
        if not all(isinstance(v, Validator) for v in vals):
            raise ValueError("a validator set holds Validator entries")
        if not 1 <= len(vals) <= MAX_VALIDATORS:
            raise ValueError(f"a validator set has 1..{MAX_VALIDATORS} validators, got {len(vals)}")
        self.validators = vals
        self._by_id = {v.id: i for i, v in enumerate(vals)}
        self._by_key = {v.public_key: i for i, v in enumerate(vals)}
        if len(self._by_id) != len(vals) or len(self._by_key) != len(vals):
            raise ValueError("validator ids and public keys must be unique")
        self.total_power = sum(v.power for v in vals)
        # smallest power that is > 2/3 (resp. > 1/3) of the total
        self._quorum = self.total_power * 2 // 3 + 1
        self._third = self.total_power // 3 + 1
        self._schedule = _proposer_schedule([v.power for v in vals])

    @classmethod
    def from_doc(cls, entries: list) -> "ValidatorSet":
        """From the genesis "validators" list; raises ValueError on a malformed entry."""
        if not isinstance(entries, list):
            raise ValueError("genesis validators must be a list")
        try:
            return cls(Validator.from_doc(v) for v in entries)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"genesis validators are malformed: {e!r}") from None

    def __len__(self) -> int:
        return len(self.validators)

    def __iter__(self) -> Iterator[Validator]:
        return iter(self.validators)

    def __getitem__(self, index: int) -> Validator:
        return self.validators[index]

    def index_of_key(self, public_key: bytes) -> int | None:
        return self._by_key.get(bytes(public_key))

    def index_of_id(self, vid: str) -> int | None:
        return self._by_id.get(vid)

    def by_id(self, vid: str) -> Validator | None:
        i = self._by_id.get(vid)
        return None if i is None else self.validators[i]

    def power(self, index: int) -> int:
        return self.validators[index].power

    @property
    def quorum_power(self) -> int:
        return self._quorum

    @property
    def skip_power(self) -> int:
        return self._third

    def has_quorum(self, power: int) -> bool:
        return power >= self._quorum

    def has_one_third(self, power: int) -> bool:
        return power >= self._third

    def proposer(self, height: int, round_: int) -> int:
        """Index of the proposer of (height, round): position height + round of the smooth
        weighted round-robin schedule, so each validator proposes in proportion to its power,
        spread out, and the next round of a height has the next proposer."""
        s = self._schedule
        return s[(height + round_) % len(s)]


def _proposer_schedule(powers: list[int]) -> tuple[int, ...]:
    g = 0
    for p in powers:
        g = gcd(g, p)
    weights = [p // g for p in powers]
    period = sum(weights)
    if period > MAX_PROPOSER_PERIOD:
        raise ValueError(f"voting powers divided by their gcd sum to {period}; at most {MAX_PROPOSER_PERIOD} "
                         "are supported (scale the powers down)")
    current = [0] * len(weights)
    out = []
    for _ in range(period):
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= period
        out.append(best)
    return tuple(out)
