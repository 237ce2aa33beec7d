"""OCPP charge points: a CSMS for OCPP 1.6J and 2.0.1 in every bureau node (docs/ocpp.md).

`password` is imported by the ledger (the enrollment's digest format), so this package's
`__init__` imports nothing; the node wires `bureau.ocpp.service.Csms`.
"""
