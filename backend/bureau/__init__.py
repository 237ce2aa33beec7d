"""The bureau node: receipt ingest, ledger, consensus and the driver/operator API."""
