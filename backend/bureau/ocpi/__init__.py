"""OCPI 2.2.1 out of the bureau: tariffs and CDRs of OCPP charge points (docs/ocpi.md).

`site` is imported by the ledger (an enrollment's location), so this package's `__init__`
imports nothing."""
