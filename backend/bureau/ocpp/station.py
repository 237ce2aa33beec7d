"""What both versions' charge-point sessions share: the OCPP-J framing errors and their codes,
the rate-limited connection, and the CSMS they report to (the protocol handlers are `v16.py`
and `v201.py`)."""

from __future__ import annotations

import json
import logging
import time

from ocpp.exceptions import OCPPError
from ocpp.messages import CallError, MessageType, unpack

log = logging.getLogger(__name__)

# OCPP 1.6 spells two error codes its own way (OCPP-J 1.6, CallError); 2.0.1 fixed them.
V16_CODES = {"FormatViolation": "FormationViolation", "OccurrenceConstraintViolation": "OccurenceConstraintViolation"}
V201_CODES = {v: k for k, v in V16_CODES.items()}


class RateLimited(Exception):
    """The connection sent more messages than its rate allows; it is closed."""


class LimitedConnection:
    """The websocket as the `ocpp` library sees it (recv/send), with a token bucket of
    `rate_per_s` messages a second and bursts of twice that."""

    def __init__(self, ws, rate_per_s: int, clock=time.monotonic) -> None:
        self.ws, self.rate, self.clock = ws, rate_per_s, clock
        self.tokens, self.at = 2.0 * rate_per_s, clock()

    async def recv(self):
        message = await self.ws.recv()
        now = self.clock()
        self.tokens = min(2.0 * self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            raise RateLimited(f"more than {self.rate} messages/s")
        self.tokens -= 1
        return message

    async def send(self, message) -> None:
        await self.ws.send(message)


def unique_id_of(raw) -> str:
    """The message id of a frame that could not be taken, for its CallError; "-1" when it has
    none that can be read (OCPP-J 2.0.1, Part 4, CALLERROR)."""
    try:
        msg = json.loads(raw)
    except (ValueError, TypeError):
        return "-1"
    if isinstance(msg, list) and len(msg) > 1 and isinstance(msg[1], str) and 0 < len(msg[1]) <= 36:
        return msg[1]
    return "-1"


class StationMixin:
    """Put before the library's ChargePoint: a frame that cannot be taken gets a CallError with
    the version's code and a plain-text cause (the library would log and drop it, or fail
    serializing the offending message into the details)."""

    _ocpp_version: str

    def call_error(self, unique_id: str, error: OCPPError) -> str:
        codes = V16_CODES if self._ocpp_version == "1.6" else V201_CODES
        details = error.details if isinstance(error.details, dict) else {}
        cause = str(details.get("cause", ""))[:255]
        return CallError(unique_id, codes.get(error.code, error.code), error.description,
                         {"cause": cause} if cause else {}).to_json()

    async def route_message(self, raw_msg):
        try:
            msg = unpack(raw_msg)
        except OCPPError as e:
            await self._send(self.call_error(unique_id_of(raw_msg), e))
            return
        if msg.message_type_id == MessageType.Call:
            try:
                await self._handle_call(msg)
            except OCPPError as e:
                await self._send(self.call_error(msg.unique_id, e))
        elif msg.message_type_id in (MessageType.CallResult, MessageType.CallError):
            self._response_queue.put_nowait(msg)
