"""The HTTP API of a bureau node (Litestar): chain, wallets, receipt proofs, operator actions."""
