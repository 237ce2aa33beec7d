"""The genesis document: chain id, bureau validators, operator keys and the first tariffs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import canonical
from .certificate import chain_id_bytes
from .tariff import Tariff, TariffError
from .validators import Validator, ValidatorSet


class GenesisError(ValueError):
    """A genesis document that is malformed or inconsistent."""


@dataclass(frozen=True)
class Genesis:
    doc: dict
    chain_id: str
    time_ms: int
    validators: ValidatorSet
    operators: dict[str, bytes]
    tariffs: tuple[Tariff, ...]

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(canonical.dumps(self.doc)).digest()

    def validator(self, node_id: str) -> Validator:
        v = self.validators.by_id(node_id)
        if v is not None:
            return v
        raise GenesisError(f"{node_id} is not a validator of {self.chain_id}")

    @classmethod
    def from_doc(cls, doc: dict) -> "Genesis":
        try:
            if doc.get("v") != 1:
                raise GenesisError("genesis must have v = 1")
            validators = ValidatorSet.from_doc(doc["validators"])
            operators = {o["id"]: bytes.fromhex(o["public_key"]) for o in doc["operators"]}
            tariffs = tuple(Tariff.from_doc(t) for t in doc.get("tariffs", []))
            chain_id_bytes(doc["chain_id"])  # what every signature covers: 1-64 printable ASCII
            genesis = cls(doc, doc["chain_id"], int(doc["genesis_time_ms"]), validators, operators, tariffs)
        except (KeyError, TypeError, ValueError, TariffError) as e:
            if isinstance(e, GenesisError):
                raise
            raise GenesisError(f"genesis is malformed: {e}") from None
        if not operators or any(len(k) != 32 for k in operators.values()):
            raise GenesisError("genesis needs operator keys of 32 bytes")
        return genesis

    @classmethod
    def load(cls, path: Path) -> "Genesis":
        return cls.from_doc(json.loads(Path(path).read_text()))
