"""Block agreement between bureau nodes.

`core` is the Tendermint-family BFT state machine (sans I/O, in the shape of raft's RawNode),
`types` its messages and WAL records (certificates and the validator set are the ledger's), `signing` the signer that never signs twice
at one (height, round, step), `sim` the deterministic cluster simulator
(`python -m bureau.consensus.sim`), `replica` the shell that runs it in a bureau node (one
validator or many). See docs/consensus.md.
"""

from .core import Config, Core, Timeouts
from .signing import DoubleSignError, SafeSigner, SignatureCache
from .types import (
    NIL, BlockHash, Certificate, CertificateError, Committed, DecodeError, Evidence, LastSigned, Outbound, Proposal, ProposeRequest,
    Ready, ServeRequest, Step, SyncEntry, SyncRequest, SyncResponse, ValidateRequest, Validator, ValidatorSet, Vote, WalDecision, WalLock,
    WalMessage, WalRound, decode_message, decode_record, encode_message, encode_record, proposal_sign_bytes,
    vote_sign_bytes,
)

__all__ = [
    "BlockHash", "Certificate", "CertificateError", "Committed", "Config", "Core", "DecodeError", "DoubleSignError", "Evidence",
    "LastSigned", "NIL", "Outbound", "Proposal", "ProposeRequest", "Ready", "SafeSigner", "ServeRequest", "SignatureCache", "Step",
    "SyncEntry", "SyncRequest", "SyncResponse", "Timeouts", "ValidateRequest", "Validator", "ValidatorSet", "Vote", "WalDecision", "WalLock",
    "WalMessage", "WalRound", "decode_message", "decode_record", "encode_message", "encode_record",
    "proposal_sign_bytes", "vote_sign_bytes",
]
