"""Block agreement between bureau nodes.

`core` is the Tendermint-family BFT state machine (sans I/O, RawNode shape), `types` its
messages, certificates and WAL records, `signing` the never-double-sign signer, `sim` the
deterministic cluster simulator (`python -m bureau.consensus.sim`). `solo` is the single-bureau
producer. See docs/consensus.md.
"""
