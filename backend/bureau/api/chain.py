"""The chain's public reads: head, blocks with their certificates, the genesis, chargers, tariffs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, Parameter

from ..chain import Chain
from ..ledger.records import tariff_digest
from ..ledger.state import MAX_TARIFF_VERSION
from ..ledger.tx import tx_hash
from ..node import Node
from .errors import ApiError, refusals
from .schemas import HeaderOut, ValidatorChangeOut, header_out, validator_changes_out

MAX_I64 = 2**63 - 1  # heights and entry ids are SQL BIGINTs
Height = Annotated[int, Parameter(ge=1, le=MAX_I64, description="block height, 1..2^63-1")]
TariffVersionNo = Annotated[int, Parameter(ge=1, le=MAX_TARIFF_VERSION, description="tariff version, 1..2^32-1")]


class ChainHead(msgspec.Struct):
    chain_id: str
    height: int  # 0 before the first block
    genesis_hash: str  # hex SHA-256 of the canonical genesis document
    state_root: str
    header: HeaderOut | msgspec.UnsetType = msgspec.UNSET  # absent before the first block


class BlockOut(msgspec.Struct):
    header: HeaderOut
    certificate: str  # the commit certificate, canonical JSON text (docs/consensus.md)
    txs: list[str]  # hex hashes of the block's transactions, in order


class ChargerKey(msgspec.Struct):
    charger_id: str
    public_key: str  # hex Ed25519
    retired: bool  # a retired charger's receipts are refused


class ChargerRegistry(msgspec.Struct):
    height: int  # the committed height the list is at
    chargers: list[str]  # ids enrolled and not retired, sorted


class TariffDoc(msgspec.Struct):
    """A tariff version (docs/tariff.md)."""
    v: int
    tariff_id: str
    version: int
    prices: list[tuple[int, int, int]]  # [kind, energy_price, service_fee]
    schedule: list[tuple[int, int]]  # [start_minute UTC+8, kind]


class TariffVersion(msgspec.Struct):
    version: int
    effective_from: int  # unix s: a session started from then on (until the next version's) is billed by it
    digest: str  # hex SHA-256 of the canonical tariff document


class TariffVersions(msgspec.Struct):
    tariff_id: str
    height: int  # the committed height the list is at
    in_force: int | None  # the version in force at this node's clock now; None before the first one's time
    versions: list[TariffVersion]  # ascending


class GenesisValidator(msgspec.Struct):
    id: str
    public_key: str
    power: int | msgspec.UnsetType = msgspec.UNSET
    address: str | msgspec.UnsetType = msgspec.UNSET
    api: str | msgspec.UnsetType = msgspec.UNSET


class GenesisOperator(msgspec.Struct):
    id: str
    public_key: str


class GenesisDoc(msgspec.Struct):
    """The genesis document as the node loaded it, byte for byte what `genesis_hash` is taken over."""
    v: int
    chain_id: str
    genesis_time_ms: int
    validators: list[GenesisValidator]
    operators: list[GenesisOperator]
    tariffs: list[TariffDoc] | msgspec.UnsetType = msgspec.UNSET


class ChainReader:
    """Reads of the committed chain: the head and blocks from storage, the rest from memory."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def head(self) -> ChainHead:
        chain = self.chain
        height = chain.height
        found = chain.repo.header(height) if height else None
        return ChainHead(chain_id=chain.genesis.chain_id, height=height, genesis_hash=chain.genesis.hash.hex(),
                         state_root=chain.state.state_root.hex(),
                         header=header_out(found[0]) if found else msgspec.UNSET)

    def block(self, height: int) -> BlockOut:
        found = self.chain.repo.block(height)
        if found is None and 0 < height < self.chain.repo.first_kept():
            first = self.chain.repo.first_kept()
            raise ApiError("not_kept", f"this bureau joined from a snapshot at height {first - 1}: it holds blocks "
                                       f"from {first} on (first_height {first}); ask a bureau that holds block {height}")
        if found is None:
            raise ApiError("no_block", f"no block at height {height}")
        block, cert = found
        return BlockOut(header=header_out(block.header), certificate=cert.decode(),
                        txs=[tx_hash(t).hex() for t in block.txs])

    def genesis_doc(self) -> dict[str, Any]:
        return self.chain.genesis.doc

    def chargers(self) -> ChargerRegistry:
        with self.chain.lock:  # the list and its height from one state; a commit holds the lock
            return ChargerRegistry(height=self.chain.state.height, chargers=self.chain.state.active_chargers())

    def charger(self, charger_id: str) -> ChargerKey:
        state = self.chain.state
        key = state.chargers.get(charger_id)
        if key is None:
            raise ApiError("unknown_charger", f"charger {charger_id} is not enrolled")
        return ChargerKey(charger_id=charger_id, public_key=key.hex(), retired=charger_id in state.retired)

    def tariff(self, tariff_id: str) -> TariffDoc:
        t = self.chain.state.latest_tariff(tariff_id)
        if t is None:
            raise ApiError("unknown_tariff", f"tariff {tariff_id} is not published")
        return msgspec.convert(t.to_doc(), TariffDoc)

    def tariff_versions(self, tariff_id: str) -> TariffVersions:
        with self.chain.lock:  # the versions and their height from one state
            state = self.chain.state
            versions = state.tariff_versions(tariff_id)
            height = state.height
            in_force = state.tariff_in_force(tariff_id, int(time.time()))
            docs = {v: state.tariffs[(tariff_id, v)] for v, _ in versions}
        if not versions:
            raise ApiError("unknown_tariff", f"tariff {tariff_id} is not published")
        return TariffVersions(tariff_id=tariff_id, height=height, in_force=in_force and in_force.version,
                              versions=[TariffVersion(version=v, effective_from=since, digest=tariff_digest(docs[v]))
                                        for v, since in versions])

    def tariff_version(self, tariff_id: str, version: int) -> TariffDoc:
        t = self.chain.state.tariffs.get((tariff_id, version))
        if t is None:
            raise ApiError("unknown_tariff", f"tariff {tariff_id} v{version} is not published")
        return msgspec.convert(t.to_doc(), TariffDoc)


class ValidatorSetOut(msgspec.Struct):
    seq: int  # the set version: 0 the genesis set, then one per change
    from_height: int
    validators: list[GenesisValidator]


class ValidatorsOut(msgspec.Struct):
    height: int  # the head
    in_force: ValidatorSetOut  # at the next height
    latest: ValidatorSetOut  # the last decided (in force from its from_height)
    changes: list[ValidatorChangeOut]  # every change, oldest first: a light client follows them from the genesis


def _set_out(epoch) -> ValidatorSetOut:
    from ..ledger.valset import validators_doc
    return ValidatorSetOut(seq=epoch.seq, from_height=epoch.from_height,
                           validators=[GenesisValidator(**v) for v in validators_doc(epoch.validators)])


def provide_chain_reader(node: NamedDependency[Node]) -> ChainReader:
    return ChainReader(node.chain)


class ChainController(Controller):
    path = "/v1"
    tags = ["chain"]
    dependencies = {"reader": Provide(provide_chain_reader, sync_to_thread=False)}

    # readable from any origin: a driver's phone page on one node compares its head with the others'
    @get("/chain/head", summary="Latest committed block", sync_to_thread=True,
         responses=refusals(takes_input=False),
         response_headers=[ResponseHeader(name="Access-Control-Allow-Origin", value="*")])
    def head(self, reader: NamedDependency[ChainReader]) -> ChainHead:
        return reader.head()

    @get("/blocks/{height:int}", summary="A committed block: header, commit certificate, transaction hashes",
         sync_to_thread=True, responses=refusals("no_block", "not_kept"))
    def block(self, reader: NamedDependency[ChainReader], height: Height) -> BlockOut:
        return reader.block(height)

    @get("/validators", summary="The validator set in force, the last one decided, and every change since the genesis",
         sync_to_thread=True, responses=refusals(takes_input=False))
    def validators(self, reader: NamedDependency[ChainReader]) -> ValidatorsOut:
        chain = reader.chain
        schedule, height = chain.state.schedule, chain.height
        return ValidatorsOut(height=height, in_force=_set_out(schedule.epoch_at(height + 1)),
                             latest=_set_out(schedule.latest), changes=validator_changes_out(chain.repo))

    # Served as loaded, not re-shaped: a client can check it against the head's genesis_hash.
    @get("/genesis", summary="The genesis document (validator set to check certificates with)",
         responses={200: ResponseSpec(GenesisDoc, description="The genesis document"), **refusals(takes_input=False)})
    async def genesis(self, reader: NamedDependency[ChainReader]) -> dict[str, Any]:
        return reader.genesis_doc()

    # on a worker thread: the chain's lock may be held by a commit writing to storage
    @get("/chargers", summary="The chargers enrolled and not retired, at a height", sync_to_thread=True,
         responses=refusals(takes_input=False))
    def chargers(self, reader: NamedDependency[ChainReader]) -> ChargerRegistry:
        return reader.chargers()

    @get("/chargers/{charger_id:str}", summary="An enrolled charger's public key, and whether it is retired",
         responses=refusals("unknown_charger"))
    async def charger(self, reader: NamedDependency[ChainReader], charger_id: FromPath[str]) -> ChargerKey:
        return reader.charger(charger_id)

    @get("/tariffs/{tariff_id:str}", summary="The latest version of a tariff", responses=refusals("unknown_tariff"))
    async def tariff(self, reader: NamedDependency[ChainReader], tariff_id: FromPath[str]) -> TariffDoc:
        return reader.tariff(tariff_id)

    # on a worker thread: the chain's lock may be held by a commit writing to storage
    @get("/tariffs/{tariff_id:str}/versions", summary="Every version of a tariff with its effective time and digest",
         sync_to_thread=True, responses=refusals("unknown_tariff"))
    def tariff_versions(self, reader: NamedDependency[ChainReader], tariff_id: FromPath[str]) -> TariffVersions:
        return reader.tariff_versions(tariff_id)

    @get("/tariffs/{tariff_id:str}/{version:int}",
         summary="One version's tariff document (its digest is SHA-256 of the canonical document)",
         responses=refusals("unknown_tariff"))
    async def tariff_version(self, reader: NamedDependency[ChainReader], tariff_id: FromPath[str],
                             version: TariffVersionNo) -> TariffDoc:
        return reader.tariff_version(tariff_id, version)
