"""The genesis document: chain id, bureau validators, operator keys and the first tariffs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import canonical
from .tariff import Tariff, TariffError


class GenesisError(ValueError):
    """A genesis document that is malformed or inconsistent."""


@dataclass(frozen=True)
class Validator:
    id: str
    public_key: bytes
    power: int
    address: str = ""
    api: str = ""


@dataclass(frozen=True)
class Genesis:
    doc: dict
    chain_id: str
    time_ms: int
    validators: tuple[Validator, ...]
    operators: dict[str, bytes]
    tariffs: tuple[Tariff, ...]

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(canonical.dumps(self.doc)).digest()

    def validator(self, node_id: str) -> Validator:
        for v in self.validators:
            if v.id == node_id:
                return v
        raise GenesisError(f"{node_id} is not a validator of {self.chain_id}")

    @classmethod
    def from_doc(cls, doc: dict) -> "Genesis":
        try:
            if doc.get("v") != 1:
                raise GenesisError("genesis must have v = 1")
            validators = tuple(Validator(v["id"], bytes.fromhex(v["public_key"]), int(v.get("power", 1)),
                                         v.get("address", ""), v.get("api", "")) for v in doc["validators"])
            operators = {o["id"]: bytes.fromhex(o["public_key"]) for o in doc["operators"]}
            tariffs = tuple(Tariff.from_doc(t) for t in doc.get("tariffs", []))
            genesis = cls(doc, str(doc["chain_id"]), int(doc["genesis_time_ms"]), validators, operators, tariffs)
        except (KeyError, TypeError, ValueError, TariffError) as e:
            if isinstance(e, GenesisError):
                raise
            raise GenesisError(f"genesis is malformed: {e}") from None
        if not validators or any(len(v.public_key) != 32 or v.power < 1 for v in validators):
            raise GenesisError("genesis needs validators with 32-byte keys and power >= 1")
        if len({v.id for v in validators}) != len(validators):
            raise GenesisError("validator ids must be unique")
        if not operators or any(len(k) != 32 for k in operators.values()):
            raise GenesisError("genesis needs operator keys of 32 bytes")
        return genesis

    @classmethod
    def load(cls, path: Path) -> "Genesis":
        return cls.from_doc(json.loads(Path(path).read_text()))
