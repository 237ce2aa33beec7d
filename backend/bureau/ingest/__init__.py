"""Receipts arriving over MQTT: decode, verify, queue for the next block, reply to chargers."""
