"""Full re-verification of a stored chain from its genesis: every header link, commit
certificate, Merkle root, receipt and operator signature, and the state replayed block by block.

The signature checks are the cost and each block's are independent of the others, so they run on
`jobs` worker processes, each reading its own ranges of blocks from the database (`check_block`);
the state is replayed in order here with what they found (`LedgerState.execute(receipt_keys=)`).
A worker checks each receipt against the key the database's key tables say was in effect at its
height; the replay trusts that check only when it is the key the replayed state holds, and checks
every other signature itself, so the audit trusts nothing in the database but the blocks.

Each receipt is decoded once, in the worker that verifies it: the replay takes the decoded
receipt with the block (`BlockCheck.decoded`). The replay of block k runs while the workers check
later ranges, with at most `IN_FLIGHT_PER_JOB` ranges per worker asked for and not yet replayed,
so memory stays bounded however long the chain.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .. import crypto
from ..receipts.codec import ReceiptError, decode as decode_receipt, signed_message
from . import certificate, snapshot
from .block import Block
from .genesis import Genesis
from .state import LedgerState
from .tx import KIND_RECEIPT, tx_hash

RANGE_BLOCKS = 64  # blocks a worker reads and checks per task, at most
TASKS_PER_JOB = 8  # a short chain is still cut into enough ranges to keep every worker busy
IN_FLIGHT_PER_JOB = 3  # ranges per worker checked or queued ahead of the replay
RECEIPT_KIND_BYTE = bytes([KIND_RECEIPT])

Progress = Callable[[int, int, int], None]  # (blocks done, blocks in all, receipts done)


@dataclass(frozen=True)
class BlockCheck:
    """A worker's findings on one block: its first problem, if any, the receipts whose
    signature verified, as tx hash -> the charger key it verified with, and every receipt that
    decoded, as tx hash -> (receipt, body, signature)."""
    block: Block
    problem: str | None
    certificate: bytes
    receipt_keys: dict[bytes, bytes]
    certified_by: tuple | None = None  # signers(set) the certificate verified against, as storage says
    decoded: dict[bytes, tuple] = field(default_factory=dict)


def check_block(genesis: Genesis, keys: LedgerState, block: Block, cert: bytes) -> BlockCheck:
    """The checks of one block that need no state but the chargers' keys (`keys`, as storage
    recorded them, and the validator sets storage says were decided): its certificate, its Merkle
    root and its receipts' signatures, with each receipt decoded for the replay. The replay checks
    the certificate again when the set it replayed differs from the one used here."""
    header, height = block.header, block.header.height
    certified_by = None
    try:
        validators = keys.validators_at(height)
        certificate.verify(validators, genesis.chain_id, height, header.hash, cert)
        certified_by = signers(validators)
    except ValueError:
        pass
    try:
        if not block.check_tx_root():
            raise ValueError("Merkle root does not match the transactions")
    except ValueError as e:
        return BlockCheck(block, str(e), cert, {}, certified_by)
    receipt_keys, decoded = {}, {}
    for tx in block.txs:
        if tx[:1] != RECEIPT_KIND_BYTE:
            continue  # operator and driver transactions are few: the replay checks them
        try:
            parsed = r, body, sig = decode_receipt(tx[1:])
        except ReceiptError:
            continue  # the replay refuses it, with its reason
        h = tx_hash(tx)
        decoded[h] = parsed
        key = keys.charger_key_at(r.charger_id, height)
        if key is not None and crypto.verify(key, signed_message(body), sig):
            receipt_keys[h] = key
    return BlockCheck(block, None, cert, receipt_keys, certified_by, decoded)


def signers(validators) -> tuple:
    return tuple((v.id, v.public_key, v.power) for v in validators)


def check_range(genesis: Genesis, keys: LedgerState, repo, start: int, end: int) -> list[BlockCheck]:
    """`check_block` of every stored block from `start` to `end`; fewer when the chain ends."""
    return [check_block(genesis, keys, block, cert) for block, cert in repo.blocks(start, end)]


def audit_chain(genesis: Genesis, repo, to_height: int | None = None, jobs: int = 1,
                progress: Progress | None = None) -> dict:
    """The chain up to `to_height` (default: the head when the audit starts); a bound lets a live
    node be audited at a height others are compared at while it keeps committing. `jobs` > 1
    checks signatures on that many processes, each with its own connection to `repo`'s database."""
    total = repo.head_height() if to_height is None else min(to_height, repo.head_height())
    start = _start(genesis, repo)
    size = max(1, min(RANGE_BLOCKS, (total - start.height) // (jobs * TASKS_PER_JOB)))
    ranges = [(s, min(s + size - 1, total)) for s in range(start.height + 1, total + 1, size)]
    if jobs <= 1:
        keys = _keys(genesis, repo)
        return _replay(start, (check_range(genesis, keys, repo, s, e) for s, e in ranges), total, progress)
    url = repo.engine.url.render_as_string(hide_password=False)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        # workers fork from a server that imported these once, not each importing them anew
        ctx.set_forkserver_preload([__name__, "bureau.storage"])
    with ctx.Pool(jobs, initializer=_worker_init, initargs=(genesis.doc, url)) as pool:
        return _replay(start, _checked_ahead(pool, ranges, jobs * IN_FLIGHT_PER_JOB), total, progress)


def _checked_ahead(pool, ranges: list[tuple[int, int]], in_flight: int) -> Iterator[list[BlockCheck]]:
    """The workers' findings on `ranges`, in order, with at most `in_flight` ranges asked for
    ahead of the one the replay takes next (the pool's imap would queue every range's findings
    while the replay lags behind the workers)."""
    pending: deque = deque()
    for bounds in ranges:
        pending.append(pool.apply_async(_worker_check_range, (bounds,)))
        if len(pending) > in_flight:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _start(genesis: Genesis, repo) -> LedgerState:
    """The state the replay starts from: the genesis, or for a node that joined from a snapshot
    the snapshot it stored, verified again against its certified header (ledger/snapshot.py)."""
    stored = repo.stored_snapshot(genesis)
    return LedgerState(genesis) if stored is None else snapshot.restore(genesis, stored)


def _replay(state: LedgerState, checked: Iterable[list[BlockCheck]], total: int, progress: Progress | None) -> dict:
    """The state replayed in height order over the workers' findings; the report."""
    genesis = state.genesis
    base = state.height
    blocks = receipts = 0
    problem = None
    for batch in checked:
        for check in batch:
            h = check.block.header
            try:
                if h.chain_id != genesis.chain_id or h.height != state.height + 1 or h.prev_hash != state.last_hash:
                    raise ValueError("header does not link to the previous block")
                if check.problem is not None:
                    raise ValueError(check.problem)
                validators = state.validators_at(h.height)  # as the replayed chain decided them
                if check.certified_by != signers(validators):
                    certificate.verify(validators, genesis.chain_id, h.height, h.hash, check.certificate)
                ex = state.execute(list(check.block.txs), h.time_ms, receipt_keys=check.receipt_keys,
                                   decoded=check.decoded)
                if ex.refused:
                    raise ValueError(f"invalid transaction: {ex.refused[0].reason}: {ex.refused[0].detail}")
                if ex.state_root != h.state_root:
                    raise ValueError("replayed state root differs from the header")
            except ValueError as e:
                problem = f"block {h.height}: {e}"
                break
            state.apply(ex, h.height, h.hash, h.time_ms)
            blocks += 1
            receipts += sum(1 for e in ex.effects if e.kind == "receipt")
        if problem is not None:
            break
        if progress is not None:
            progress(blocks, total, receipts)
    return {"chain_valid": problem is None, "from_height": base + 1, "blocks": blocks, "receipts": receipts, "height": state.height,
            "state_root": state.state_root.hex(), "problem": problem,
            "balances_fen": sum(w.balance for w in state.wallets.values())}


def _keys(genesis: Genesis, repo) -> LedgerState:
    keys = LedgerState(genesis)
    repo.load_keys(keys)
    return keys


_worker: tuple | None = None  # (genesis, keys, repo) of this worker process


def _worker_init(genesis_doc: dict, url: str) -> None:
    from ..storage import Repository
    global _worker
    genesis = Genesis.from_doc(genesis_doc)
    repo = Repository(url, create=False)
    _worker = (genesis, _keys(genesis, repo), repo)


def _worker_check_range(bounds: tuple[int, int]) -> list[BlockCheck]:
    genesis, keys, repo = _worker
    return check_range(genesis, keys, repo, *bounds)
