"""Light-client checks of a bill and of a state record: what a driver's phone does with a
receipt proof or a state proof from any node (docs/verifying.md).

Bill:
1. the receipt's signature verifies with the charger's key;
2. the header bytes hash to the block hash, and the commit certificate shows more than 2/3
   of the power of the validator set in force at its height precommitted that hash: the genesis
   set, then each set a change decided, followed from the genesis through the proof's
   `validator_changes` (each change's block certified by the set before it, its `v/set`
   record proven in that block's state; docs/consensus.md);
3. the receipt's audit path leads to the header's tx_root (RFC 9162 inclusion).
State record (a balance): 2., then the state proof leads from the record to the header's
state_root (ledger/stateproof.py).
Amount of a bill: the state proves the tariff version's digest and that it was the version in
force at the session's start; the tariff document has that digest and prices the receipt's
periods at its amount.
Nothing of the answering node is trusted but what these checks prove. The charger's key is
taken from the proof; a phone that wants that checked too asks a second node for it.
"""

from __future__ import annotations

import hashlib
import json

from .. import crypto
from ..receipts.codec import Receipt, ReceiptError, decode, signed_message
from . import canonical, certificate, merkle
from .block import BlockError, Header
from .genesis import Genesis
from .stateproof import verify_state_proof
from .tariff import Tariff, TariffError
from .tx import receipt_tx
from .valset import EFFECT_DELAY, Epoch, Schedule


class NotCertified(ValueError):
    """A header that is not of the genesis chain or not certified by its validators."""


def certified_header(header_hex: str, certificate_text: str, genesis: Genesis,
                     schedule: Schedule | None = None) -> Header:
    """The header whose bytes `header_hex` are, if it is of the genesis chain and the commit
    certificate proves more than 2/3 of the power of the set in force at its height (by
    `schedule`, default the genesis set) precommitted its hash."""
    header_bytes = bytes.fromhex(header_hex)
    header = Header.decode(header_bytes)
    if header.chain_id != genesis.chain_id:
        raise NotCertified("block of another chain")
    validators = schedule.at(header.height) if schedule is not None else genesis.validators
    certificate.verify(validators, genesis.chain_id, header.height, hashlib.sha256(header_bytes).digest(),
                       certificate_text.encode())
    return header


def follow_validator_changes(genesis: Genesis, changes) -> Schedule:
    """The validator sets from the genesis through `changes` (a list of {height, header,
    certificate, proof}, oldest first, as `GET /v1/validators/changes` serves them): each change's
    header certified by the set in force at its height, its state proof of `v/set` leading to that
    header's state root and naming the next set version, in force EFFECT_DELAY blocks later.
    NotCertified, or ValueError/KeyError/TypeError for a malformed entry."""
    schedule = Schedule.genesis(genesis.validators)
    if not isinstance(changes, list):
        raise NotCertified("validator_changes must be a list")
    for entry in changes:
        header = certified_header(entry["header"], entry["certificate"], genesis, schedule)
        proof = entry["proof"]
        if entry["height"] != header.height or not isinstance(proof, dict) or proof.get("key") != "v/set" \
                or not isinstance(proof.get("value"), str):
            raise NotCertified(f"the change at height {entry['height']} does not prove its v/set record")
        ok, why = verify_state_proof(header.state_root, proof)
        if not ok:
            raise NotCertified(f"the v/set record of block {header.height}: {why}")
        epoch = Epoch.from_record(proof["value"])
        latest = schedule.latest
        if epoch.seq != latest.seq + 1 or epoch.from_height != header.height + EFFECT_DELAY \
                or header.height < latest.from_height:
            raise NotCertified(f"block {header.height} does not decide validator set {latest.seq + 1}")
        schedule.add(epoch)
    return schedule


def verify_receipt_proof(proof: dict, genesis: Genesis) -> tuple[bool, str]:
    try:
        envelope = bytes.fromhex(proof["receipt"]["envelope"])
        _, body, sig = decode(envelope)
        if not crypto.verify(bytes.fromhex(proof["charger_public_key"]), signed_message(body), sig):
            return False, "receipt signature does not verify"
        schedule = follow_validator_changes(genesis, proof.get("validator_changes", []))
        header = certified_header(proof["header"]["encoded"], proof["certificate"], genesis, schedule)
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
        schedule = follow_validator_changes(genesis, answer.get("validator_changes", []))
        header = certified_header(answer["header"]["encoded"], answer["certificate"], genesis, schedule)
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


def verify_bill_amount(receipt: Receipt, version_answer: dict, next_answer: dict, tariff_doc: dict,
                       genesis: Genesis) -> tuple[bool, str]:
    """Whether `receipt.amount_fen` is its tariff's price of its periods: `version_answer` and
    `next_answer` are state proof answers of `t/<id>/<version>` and `t/<id>/<version + 1>`
    (versions' effective times ascend, so v was in force at the start iff v began at or before it
    and v + 1 is absent or begins after it), `tariff_doc` the document the digest is of."""
    key = f"t/{receipt.tariff_id}/{receipt.tariff_version}"
    next_key = f"t/{receipt.tariff_id}/{receipt.tariff_version + 1}"
    for answer, want in ((version_answer, key), (next_answer, next_key)):
        if not isinstance(answer, dict) or answer.get("key") != want:
            return False, f"the answer is not a proof of {want}"
        ok, why = verify_state_answer(answer, genesis)
        if not ok:
            return False, f"{want}: {why}"
    try:
        if version_answer["value"] is None:
            return False, f"the state holds no {key}: the tariff version is not published"
        record = json.loads(version_answer["value"])
        if record["effective_from"] > receipt.start_time:
            return False, f"{key} came in force at {record['effective_from']}, after the session's start"
        following = next_answer["value"]
        if following is not None and json.loads(following)["effective_from"] <= receipt.start_time:
            return False, f"{next_key} was in force at the session's start, not {key}"
        if hashlib.sha256(canonical.dumps(tariff_doc)).hexdigest() != record["digest"]:
            return False, f"the tariff document is not the one whose digest {key} holds"
        tariff = Tariff.from_doc(tariff_doc)
        if (tariff.tariff_id, tariff.version) != (receipt.tariff_id, receipt.tariff_version):
            return False, f"the tariff document is not {receipt.tariff_id} v{receipt.tariff_version}"
        priced = tariff.amount_fen(receipt.periods)
    except (KeyError, TypeError, ValueError, TariffError) as e:
        return False, f"tariff record or document is malformed: {e}"
    if priced != receipt.amount_fen:
        return False, f"the tariff prices the periods at {priced} fen, the receipt bills {receipt.amount_fen}"
    return True, "ok"
