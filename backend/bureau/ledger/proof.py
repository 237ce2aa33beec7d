"""Light-client checks of a bill and of a state record: what a driver's phone does with a
receipt proof or a state proof from any node (docs/verifying.md).

Bill:
1. the receipt's signature verifies with the charger's key;
2. the header bytes hash to the block hash, and the commit certificate shows more than 2/3
   of the genesis validators' power precommitted that hash;
3. the receipt's audit path leads to the header's tx_root (RFC 9162 inclusion).
State record (a balance): 2., then the state proof leads from the record to the header's
state_root (ledger/stateproof.py).
Nothing of the answering node is trusted but what these checks prove. The charger's key is
taken from the proof; a phone that wants that checked too asks a second node for it.
"""

from __future__ import annotations

import hashlib

from .. import crypto
from ..receipts.codec import ReceiptError, decode, signed_message
from . import certificate, merkle
from .block import BlockError, Header
from .genesis import Genesis
from .stateproof import verify_state_proof
from .tx import receipt_tx


class NotCertified(ValueError):
    """A header that is not of the genesis chain or not certified by its validators."""


def certified_header(header_hex: str, certificate_text: str, genesis: Genesis) -> Header:
    """The header whose bytes `header_hex` are, if it is of the genesis chain and the commit
    certificate proves more than 2/3 of the validators' power precommitted its hash."""
    header_bytes = bytes.fromhex(header_hex)
    header = Header.decode(header_bytes)
    if header.chain_id != genesis.chain_id:
        raise NotCertified("block of another chain")
    certificate.verify(genesis.validators, genesis.chain_id, header.height, hashlib.sha256(header_bytes).digest(),
                       certificate_text.encode())
    return header


def verify_receipt_proof(proof: dict, genesis: Genesis) -> tuple[bool, str]:
    try:
        envelope = bytes.fromhex(proof["receipt"]["envelope"])
        _, body, sig = decode(envelope)
        if not crypto.verify(bytes.fromhex(proof["charger_public_key"]), signed_message(body), sig):
            return False, "receipt signature does not verify"
        header = certified_header(proof["header"]["encoded"], proof["certificate"], genesis)
        leaf = merkle.leaf_hash(receipt_tx(envelope))
        path = [bytes.fromhex(p) for p in proof["audit_path"]]
        if proof["tree_size"] != header.tx_count:
            return False, "tree size differs from the header's transaction count"
        if not merkle.verify_inclusion(leaf, proof["leaf_index"], header.tx_count, path, header.tx_root):
            return False, "receipt is not in the block"
    except NotCertified as e:
        return False, str(e)
    except (KeyError, TypeError, ValueError, ReceiptError, BlockError, AttributeError) as e:
        return False, f"proof is malformed or does not verify: {e}"
    return True, "ok"


def verify_state_answer(answer: dict, genesis: Genesis) -> tuple[bool, str]:
    """Whether a `GET /v1/state/proof` answer proves that its `key` holds its `value` (or, value
    null, holds nothing) in the state after a block the genesis validators certified."""
    try:
        header = certified_header(answer["header"]["encoded"], answer["certificate"], genesis)
        proof = answer["proof"]
        if not isinstance(proof, dict) or proof.get("key") != answer["key"] or proof.get("value") != answer["value"]:
            return False, "the answer's key and value are not the ones its proof proves"
        if answer["height"] != header.height:
            return False, "the answer's height is not its header's"
        ok, why = verify_state_proof(header.state_root, proof)
        if not ok:
            return False, f"state proof: {why}"
    except NotCertified as e:
        return False, str(e)
    except (KeyError, TypeError, ValueError, BlockError, AttributeError) as e:
        return False, f"proof is malformed or does not verify: {e}"
    return True, "ok"
