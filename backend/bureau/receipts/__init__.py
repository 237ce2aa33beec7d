"""Charging receipts, format v1 (docs/receipt-v1.md)."""

from .codec import Receipt, ReceiptError, decode, encode_body, seal, receipt_id  # noqa: F401
