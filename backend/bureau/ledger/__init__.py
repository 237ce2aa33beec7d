"""The hash-linked ledger: Merkle trees, blocks, transactions and the state they produce."""
