"""An operator action's status is never lost between the mempool and its outcome: the status
endpoint reads the mempool first, and an action leaves the mempool only after its outcome is
stored (a committed block) or recorded (a refusal met while building a block)."""

import time
from collections import OrderedDict

import pytest
from nacl.signing import SigningKey

from bureau.api.errors import ApiError
from bureau.api.operator import OperatorDesk
from bureau.chain import Chain
from bureau.consensus.replica import LedgerBlocks
from bureau.ingest.mempool import Mempool
from bureau.ledger.genesis import Genesis
from bureau.ledger.tx import ACTION_MAX_AGE_S, operator_action, tx_hash
from bureau.storage import Repository

OPERATOR = SigningKey(b"\x07" * 32)
NODE = SigningKey(b"\x08" * 32)


def _chain(tmp_path) -> Chain:
    genesis = Genesis.from_doc({
        "v": 1, "chain_id": "ev-test", "genesis_time_ms": 1_760_000_000_000,
        "validators": [{"id": "bureau-1", "public_key": NODE.verify_key.encode().hex()}],
        "operators": [{"id": "operator-1", "public_key": OPERATOR.verify_key.encode().hex()}]})
    return Chain(genesis, Repository(f"sqlite:///{tmp_path}/chain.sqlite"))


def _open_wallet(wallet: str, now: int | None = None) -> bytes:
    return operator_action(OPERATOR, "operator-1", "open_wallet", {"wallet_id": wallet, "public_key": "ab" * 32},
                           now=now if now is not None else int(time.time()))


class CommitDuringRead:
    """A block holding action `h` commits on another thread right after the status reader's
    first look (at the mempool or at storage, whichever it reads first): the outcome is stored,
    then the action leaves the mempool, as the replica does."""

    def __init__(self, h: bytes, tx: bytes) -> None:
        self.h, self.stored = h, False
        self.mempool = _WatchedMempool(self)
        self.mempool.add(h, tx, verified=True)
        self.looked = False

    def after_a_look(self) -> None:
        if not self.looked:
            self.looked = True
            self.stored = True
            self.mempool.remove([self.h])

    def operator_outcome(self, h: bytes):
        seen = ("committed", "", "", 1) if self.stored and h == self.h else None
        self.after_a_look()
        return seen


class _WatchedMempool(Mempool):
    def __init__(self, race: CommitDuringRead) -> None:
        super().__init__()
        self.race = race

    def __contains__(self, h: bytes) -> bool:
        seen = super().__contains__(h)
        self.race.after_a_look()
        return seen


def test_an_action_committing_during_a_status_read_is_pending_or_committed():
    tx = _open_wallet("W-1")
    h = tx_hash(tx)
    race = CommitDuringRead(h, tx)

    class FakeChain:
        repo = race

    desk = OperatorDesk(FakeChain(), race.mempool, OrderedDict())
    assert desk.status(h).status == "pending"       # its first look, before the commit landed
    st = desk.status(h)
    assert (st.status, st.height) == ("committed", 1)


def test_a_refusal_met_while_building_is_recorded_before_the_action_leaves_the_mempool(tmp_path):
    chain = _chain(tmp_path)
    mempool = Mempool()
    stale = _open_wallet("W-2", now=int(time.time()) - ACTION_MAX_AGE_S - 60)  # admitted, then too old
    h = tx_hash(stale)
    mempool.add(h, stale, verified=True)
    refused: OrderedDict = OrderedDict()
    desk = OperatorDesk(chain, mempool, refused)
    during = []

    def publish(refusals):
        during.append(desk.status(h).status)        # an API read racing the build: never unknown
        for r in refusals:
            refused[tx_hash(r.tx)] = (r.reason, r.detail)

    LedgerBlocks(chain, mempool, "bureau-1", 100).build(publish)
    assert during == ["pending"]
    st = desk.status(h)
    assert h not in mempool and (st.status, st.reason) == ("refused", "expired")
    with pytest.raises(ApiError):
        desk.status(bytes(32))
