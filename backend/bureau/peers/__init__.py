"""Authenticated links between bureau nodes: framing, handshake and the TCP shell."""
