"""State proofs (docs/state.md): a record of the state map with its proof, the certified header of
the same height and its commit certificate, so a phone checks a balance or a tariff itself.
Driver-signed; a driver reads records of their own wallet and the public ones."""

from __future__ import annotations

import json
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import Parameter

from ..chain import Chain
from ..node import Node
from .driver import DRIVER_DEPENDENCIES
from .errors import ApiError, refusals
from .schemas import HeaderOut, ValidatorChangeOut, header_out, validator_changes_out

MAX_KEY = 200  # longer than any key an entity's ids make (docs/state.md)
PUBLIC_KINDS = frozenset({"o", "c", "t", "m", "v", "e"})  # operators, chargers, tariffs, meter marks, validators, evidence
OWN_KINDS = frozenset({"w", "b"})  # the key names the wallet
OWNED_RECORD_KINDS = frozenset({"k", "p"})  # the record names the wallet: cards, payment references
StateKey = Annotated[str, Parameter(min_length=1, max_length=MAX_KEY,
                                    description="a state map key, e.g. w/<wallet id> or t/<tariff id>/<version>")]


class OtherLeaf(msgspec.Struct):
    """The leaf an absent key's path ends at (docs/state.md)."""
    path: str  # hex32
    value_hash: str  # hex32


class StateProof(msgspec.Struct):
    """Proof JSON v1 (docs/state.md); `verify_state_proof` checks it against a state root."""
    v: int
    key: str
    value: str | None
    siblings: list[str]  # hex32, the sibling at depth 0 first
    other: OtherLeaf | None


class StateProofOut(msgspec.Struct):
    key: str
    value: str | None  # the record's canonical JSON text, null when the map holds no such key
    height: int  # the block after which the map is this
    proof: StateProof  # against header.state_root
    header: HeaderOut
    certificate: str  # the commit certificate of block `height`, canonical JSON text
    validator_changes: list[ValidatorChangeOut]  # to follow the validator sets from the genesis to `height`


class StateProver:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def proof(self, wallet_id: str, key: str) -> StateProofOut:
        kind, slash, rest = key.partition("/")
        if not slash or not rest or kind not in PUBLIC_KINDS | OWN_KINDS | OWNED_RECORD_KINDS:
            raise ApiError("bad_key", f"{key!r} is not a state key: o/, c/, w/, k/, t/, m/, p/, b/, v/ or e/ and an id")
        snapshot = self.chain.state.snapshot  # one value: the map and its height agree
        value = snapshot.state_map.get(key)
        if kind in OWN_KINDS and rest != wallet_id \
                or kind in OWNED_RECORD_KINDS and (value is None or json.loads(value)["wallet_id"] != wallet_id):
            # the same answer for "absent" and "someone else's": a driver learns nothing of others
            raise ApiError("not_your_wallet", f"{key} is not a record of your wallet")
        if snapshot.height == 0:
            raise ApiError("no_block", "the chain has no block yet: no header certifies a state root")
        header, cert = self.chain.repo.header(snapshot.height)  # stored before the state moved to it
        return StateProofOut(key=key, value=value, height=snapshot.height, proof=msgspec.convert(snapshot.state_map.prove(key), StateProof),
                             header=header_out(header), certificate=cert.decode(),
                             validator_changes=validator_changes_out(self.chain.repo))


def provide_state_prover(node: NamedDependency[Node]) -> StateProver:
    return StateProver(node.chain)


class StateController(Controller):
    path = "/v1/state"
    tags = ["state (driver-signed)"]
    dependencies = {**DRIVER_DEPENDENCIES, "prover": Provide(provide_state_prover, sync_to_thread=False)}

    @get("/proof", sync_to_thread=True,
         summary="A state record with its sparse Merkle proof, the certified header of that height and its certificate",
         responses=refusals("bad_key", "not_your_wallet", "no_block", driver_signed=True))
    def proof(self, prover: NamedDependency[StateProver], signer: NamedDependency[str], key: StateKey) -> StateProofOut:
        return prover.proof(signer, key)
