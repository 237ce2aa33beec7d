"""Receipt v1 codec and its stateless checks (docs/receipt-v1.md).

Decoding is strict: one encoding per receipt, every field range-checked, no trailing bytes.
Anything wrong raises ReceiptError with a machine reason the charger is told.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, fields
from operator import attrgetter

from ..errors import ReasonedError

VERSION = 1
MAX_ENVELOPE = 1024
SIG_LEN = 64
DOMAIN_TAG = b"EV-RECEIPT/v1".ljust(16, b"\x00")
STOP_REASONS = frozenset("LRQUFPT")
AUTH_METHODS = frozenset({1, 2, 3})
PERIOD_KINDS = 4
_ID = re.compile(r"[A-Za-z0-9._-]{1,32}\Z")
_PRINTABLE = re.compile(r"[\x20-\x7e]*\Z")
_U32 = 2**32 - 1
_U64 = 2**64 - 1


class ReceiptError(ReasonedError):
    """A receipt was refused; `reason` is one of the codes of docs/receipt-v1.md."""


@dataclass(frozen=True, slots=True)
class Receipt:
    charger_id: str
    seq: int
    session_id: bytes
    auth_method: int
    id_token: str
    wallet_id: str
    authorized_fen: int
    auth_ref: str
    start_time: int
    end_time: int
    time_flags: int
    meter_serial: str
    meter_start_wh: int
    meter_end_wh: int
    meter_status: int
    stop_reason: str
    tariff_id: str
    tariff_version: int
    periods: tuple[tuple[int, int], ...]
    amount_fen: int
    firmware_version: str
    version: int = VERSION

    @property
    def energy_wh(self) -> int:
        return self.meter_end_wh - self.meter_start_wh

    def __reduce__(self):
        # Pickled as its field values, in order (the audit's workers send every receipt they
        # decode): dataclasses' own state functions look the fields up again for each receipt.
        return Receipt, _field_values(self)

    def check(self) -> None:
        """Stateless rules: ranges, identifiers, and the arithmetic between fields."""
        def bad(detail: str) -> ReceiptError:
            return ReceiptError("malformed", detail)

        if self.version != VERSION:
            raise ReceiptError("unsupported_version", f"version {self.version}")
        for name in ("charger_id", "wallet_id", "meter_serial", "tariff_id", "firmware_version"):
            if not _ID.match(getattr(self, name)):
                raise bad(f"{name} must be 1-32 of A-Z a-z 0-9 . _ -")
        for name in ("id_token", "auth_ref"):
            value = getattr(self, name)
            if len(value) > 64 or not _PRINTABLE.match(value):
                raise bad(f"{name} must be 0-64 printable ASCII")
        if not 1 <= self.seq <= _U32:
            raise bad("seq must be 1..2^32-1")
        if len(self.session_id) != 16:
            raise bad("session_id must be 16 bytes")
        if self.auth_method not in AUTH_METHODS:
            raise bad(f"unknown auth_method {self.auth_method}")
        if self.time_flags & ~0b11:
            raise bad("time_flags has unknown bits")
        if self.meter_status & ~0b1111:
            raise bad("meter_status has unknown bits")
        if self.stop_reason not in STOP_REASONS:
            raise bad(f"unknown stop_reason {self.stop_reason!r}")
        if not 1 <= self.tariff_version <= _U32:
            raise bad("tariff_version must be >= 1")
        kinds = [k for k, _ in self.periods]
        if len(kinds) > PERIOD_KINDS or kinds != sorted(set(kinds)) or any(not 0 <= k < PERIOD_KINDS for k in kinds):
            raise bad("periods must have unique kinds 0-3 in ascending order")
        if self.start_time > self.end_time:
            raise ReceiptError("inconsistent", "start_time is after end_time")
        if self.meter_start_wh > self.meter_end_wh:
            raise ReceiptError("inconsistent", "meter_start_wh is above meter_end_wh")
        if sum(wh for _, wh in self.periods) != self.energy_wh:
            raise ReceiptError("inconsistent", "period energies do not add up to meter_end_wh - meter_start_wh")


_field_values = attrgetter(*(f.name for f in fields(Receipt)))


def _str(value: str) -> bytes:
    raw = value.encode("ascii")
    if len(raw) > 255:
        raise ReceiptError("malformed", "string over 255 bytes")
    return bytes([len(raw)]) + raw


def encode_body(r: Receipt) -> bytes:
    parts = [
        struct.pack(">B", r.version), _str(r.charger_id), struct.pack(">I", r.seq), r.session_id,
        struct.pack(">B", r.auth_method), _str(r.id_token), _str(r.wallet_id),
        struct.pack(">Q", r.authorized_fen), _str(r.auth_ref),
        struct.pack(">QQB", r.start_time, r.end_time, r.time_flags), _str(r.meter_serial),
        struct.pack(">QQBB", r.meter_start_wh, r.meter_end_wh, r.meter_status, ord(r.stop_reason)),
        _str(r.tariff_id), struct.pack(">IB", r.tariff_version, len(r.periods)),
        *(struct.pack(">BQ", k, wh) for k, wh in r.periods),
        struct.pack(">Q", r.amount_fen), _str(r.firmware_version),
    ]
    return b"".join(parts)


def signed_message(body: bytes) -> bytes:
    return DOMAIN_TAG + body


def seal(r: Receipt, signing_key) -> bytes:
    """Envelope of `r` signed with a nacl.signing.SigningKey (tests, simulators, vectors)."""
    body = encode_body(r)
    return body + signing_key.sign(signed_message(body)).signature


def receipt_id(envelope: bytes) -> str:
    return hashlib.sha256(envelope).hexdigest()


_U32_AT = struct.Struct(">I").unpack_from
_U64_AT = struct.Struct(">Q").unpack_from
_TIMES_AT = struct.Struct(">QQB").unpack_from  # start_time, end_time, time_flags
_METER_AT = struct.Struct(">QQBB").unpack_from  # meter_start_wh, meter_end_wh, meter_status, stop_reason
_TARIFF_AT = struct.Struct(">IB").unpack_from  # tariff_version, number of periods
_PERIOD_AT = struct.Struct(">BQ").unpack_from


def decode(envelope: bytes) -> tuple[Receipt, bytes, bytes]:
    """Parse and check an envelope; returns (receipt, body, signature). The signature is not
    verified here: that needs the charger's enrolled key (see ledger).

    One flat pass of fixed-layout reads (every node decodes every receipt): a read past the end
    raises IndexError or struct.error, and a text cut short leaves the position past the end,
    which the check of the final position catches."""
    if len(envelope) > MAX_ENVELOPE:
        raise ReceiptError("oversized", f"{len(envelope)} bytes, limit {MAX_ENVELOPE}")
    if len(envelope) <= SIG_LEN:
        raise ReceiptError("malformed", "shorter than a signature")
    body, sig = envelope[:-SIG_LEN], envelope[-SIG_LEN:]
    version = body[0]
    if version != VERSION:
        raise ReceiptError("unsupported_version", f"version {version}")
    try:
        n = body[1]
        charger_id = body[2:2 + n].decode("ascii")
        p = 2 + n
        (seq,) = _U32_AT(body, p)
        session_id = body[p + 4:p + 20]
        auth_method = body[p + 20]
        n = body[p + 21]
        id_token = body[p + 22:p + 22 + n].decode("ascii")
        p += 22 + n
        n = body[p]
        wallet_id = body[p + 1:p + 1 + n].decode("ascii")
        p += 1 + n
        (authorized_fen,) = _U64_AT(body, p)
        n = body[p + 8]
        auth_ref = body[p + 9:p + 9 + n].decode("ascii")
        p += 9 + n
        start_time, end_time, time_flags = _TIMES_AT(body, p)
        n = body[p + 17]
        meter_serial = body[p + 18:p + 18 + n].decode("ascii")
        p += 18 + n
        meter_start_wh, meter_end_wh, meter_status, stop = _METER_AT(body, p)
        n = body[p + 18]
        tariff_id = body[p + 19:p + 19 + n].decode("ascii")
        p += 19 + n
        tariff_version, n_periods = _TARIFF_AT(body, p)
        p += 5
        if n_periods > PERIOD_KINDS:
            raise ReceiptError("malformed", f"{n_periods} periods, at most {PERIOD_KINDS}")
        periods = tuple(_PERIOD_AT(body, p + 9 * i) for i in range(n_periods))
        p += 9 * n_periods
        (amount_fen,) = _U64_AT(body, p)
        n = body[p + 8]
        firmware_version = body[p + 9:p + 9 + n].decode("ascii")
        p += 9 + n
    except (IndexError, struct.error):
        raise ReceiptError("malformed", "receipt ends early") from None
    except UnicodeDecodeError:
        raise ReceiptError("malformed", "text field is not ASCII") from None
    if p > len(body):
        raise ReceiptError("malformed", "receipt ends early")
    if p != len(body):
        raise ReceiptError("malformed", f"{len(body) - p} bytes after the last field")
    receipt = Receipt(
        charger_id=charger_id, seq=seq, session_id=session_id, auth_method=auth_method,
        id_token=id_token, wallet_id=wallet_id, authorized_fen=authorized_fen, auth_ref=auth_ref,
        start_time=start_time, end_time=end_time, time_flags=time_flags, meter_serial=meter_serial,
        meter_start_wh=meter_start_wh, meter_end_wh=meter_end_wh, meter_status=meter_status,
        stop_reason=chr(stop), tariff_id=tariff_id, tariff_version=tariff_version, periods=periods,
        amount_fen=amount_fen, firmware_version=firmware_version, version=version,
    )
    receipt.check()
    return receipt, body, sig
