# NXP MFRC522 (the "RC522" reader module) on SPI: ISO/IEC 14443 type A cards (MIFARE and
# compatibles), read up to their UID. Nothing beyond the UID is read: the card is a token, the
# wallet behind it lives on the bureau's chain (docs/authorization.md).
#
#   reader = RC522(spi, cs, rst)      spi: machine.SPI (mode 0, <= 10 MHz); cs: chip select
#   reader.init()                     soft reset, timer, 100 % ASK, CRC preset, antenna on
#   reader.poll()                     every ~100-200 ms: the UID (upper-case hex) of a card newly
#                                     presented, else None (once per presentation)
#
# SPI frames (datasheet section 8.1.2): an address byte (register << 1, bit 7 set for a read)
# then one data byte, each register access a chip-select cycle of two bytes; the scratch
# buffers are allocated once, so a poll with no card allocates nothing.
#
# One poll (ISO/IEC 14443-3): WUPA (7-bit short frame; wakes idle and halted cards) -> ATQA;
# per cascade level ANTICOLLISION (SEL, NVB 0x20) -> 4 UID bytes + BCC, then SELECT (SEL, NVB
# 0x70, the 5 bytes, CRC_A) -> SAK; SAK bit 3 (0x04) says the UID goes on at the next level,
# and the cascade tag 0x88 then stands first. 4-, 7- and 10-byte UIDs take 1, 2, 3 levels. The
# card is put to HALT (HLTA) afterwards, so the next poll's WUPA finds it again while it stays
# in the field: a card is reported when it arrives, and again only after it was away for
# `release_polls` polls in a row. Two cards at once (a bit collision) are not resolved: nothing
# is reported until one is taken away (`errors` and `last_error` count such polls).
# CRC_A is computed here, not by the chip's coprocessor (one register round trip less).
import binascii

from errors import CodecError

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import sleep_ms as _sleep_ms
except ImportError:  # CPython
    import time as _time

    def _sleep_ms(ms):
        _time.sleep(ms / 1000)

# registers (MFRC522 datasheet, table 20)
_CommandReg = const(0x01)
_ComIrqReg = const(0x04)
_ErrorReg = const(0x06)
_FIFODataReg = const(0x09)
_FIFOLevelReg = const(0x0A)
_ControlReg = const(0x0C)
_BitFramingReg = const(0x0D)
_ModeReg = const(0x11)
_TxControlReg = const(0x14)
_TxASKReg = const(0x15)
_TModeReg = const(0x2A)
_TPrescalerReg = const(0x2B)
_TReloadRegH = const(0x2C)
_TReloadRegL = const(0x2D)
_VersionReg = const(0x37)

# commands
_CMD_IDLE = const(0x00)
_CMD_TRANSCEIVE = const(0x0C)
_CMD_SOFT_RESET = const(0x0F)
_POWER_DOWN = const(0x10)  # CommandReg: set until the soft reset has finished

# ComIrqReg bits
_IRQ_RX = const(0x20)
_IRQ_IDLE = const(0x10)
_IRQ_TIMER = const(0x01)
# ErrorReg bits
_ERR_PROTOCOL = const(0x01)
_ERR_PARITY = const(0x02)
_ERR_COLL = const(0x08)
_ERR_OVERFLOW = const(0x10)

_START_SEND = const(0x80)  # BitFramingReg
_FLUSH = const(0x80)  # FIFOLevelReg

# PICC commands (ISO/IEC 14443-3)
_PICC_WUPA = const(0x52)
_PICC_HLTA = const(0x50)
_PICC_SEL_CL1 = const(0x93)  # CL2 0x95, CL3 0x97
_NVB_ANTICOLL = const(0x20)
_NVB_SELECT = const(0x70)
_CASCADE_TAG = const(0x88)
_SAK_MORE = const(0x04)

# transceive results below zero
_NO_ANSWER = const(-1)
_COLLISION = const(-2)
_BAD_FRAME = const(-3)

# the chip's timer: 13.56 MHz / (2 * 0xA9 + 1) = 40 kHz, reload 200 -> 5 ms without an answer
# (a card answers within ~0.1 ms; a longer timer would only hold up the caller on an empty field)
_PRESCALER = const(0xA9)
_RELOAD = const(200)
_WAIT_POLLS = const(2000)  # ComIrqReg reads before the chip counts as hung (its timer never fired)
_RESET_POLLS = const(50)
_KNOWN_VERSIONS = (0x88, 0x90, 0x91, 0x92, 0x12, 0xB2)  # FM17522 clone, v0.0, v1.0, v2.0, clones


RC522Error = CodecError  # the chip stopped answering or answered wrongly


def crc_a(data, n):
    """CRC_A of ISO/IEC 14443-3 (annex B) over data[:n]: preset 0x6363, sent low byte first."""
    crc = 0x6363
    for i in range(n):
        b = (data[i] ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = ((crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)) & 0xFFFF
    return crc


class RC522:
    def __init__(self, spi, cs, rst=None, release_polls=2):
        self.spi = spi
        self.cs = cs
        self.rst = rst
        self.release_polls = release_polls
        self.version = None
        self.errors = 0  # polls where a card answered but could not be read (collision, noise)
        self.last_error = None
        self._tx = bytearray(2)
        self._rx = bytearray(2)
        self._frame = bytearray(9)  # the frame to send (SELECT is the longest: 9 bytes)
        self._buf = bytearray(8)  # the answer read from the FIFO
        self._uid = bytearray(10)  # UID being read
        self._seen = bytearray(10)  # UID of the card in the field, reported already
        self._seen_len = 0
        self._misses = 0
        self._bits = 0
        cs.value(1)

    # ---- registers -----------------------------------------------------------------------

    def _write(self, reg, value):
        tx = self._tx
        tx[0] = (reg << 1) & 0x7E
        tx[1] = value
        self.cs.value(0)
        try:
            self.spi.write(tx)
        finally:
            self.cs.value(1)

    def _read(self, reg):
        tx = self._tx
        tx[0] = ((reg << 1) & 0x7E) | 0x80
        tx[1] = 0
        self.cs.value(0)
        try:
            self.spi.write_readinto(tx, self._rx)
        finally:
            self.cs.value(1)
        return self._rx[1]

    # ---- set-up --------------------------------------------------------------------------

    def init(self):
        """Reset the chip and set it up for ISO 14443 A; raises RC522Error when no chip answers."""
        if self.rst is not None:
            self.rst.value(0)
            _sleep_ms(1)
            self.rst.value(1)
            _sleep_ms(50)  # oscillator start-up
        self._write(_CommandReg, _CMD_SOFT_RESET)
        for _ in range(_RESET_POLLS):
            _sleep_ms(1)
            if not self._read(_CommandReg) & _POWER_DOWN:
                break
        else:
            raise RC522Error("no_reset", "the soft reset did not finish")
        v = self._read(_VersionReg)
        if v not in _KNOWN_VERSIONS:
            raise RC522Error("no_chip", "VersionReg reads 0x%02X (wiring, power or chip select?)" % v)
        self.version = v
        self._write(_TModeReg, 0x80)  # TAuto: the timer starts at the end of each transmission
        self._write(_TPrescalerReg, _PRESCALER)
        self._write(_TReloadRegH, _RELOAD >> 8)
        self._write(_TReloadRegL, _RELOAD & 0xFF)
        self._write(_TxASKReg, 0x40)  # 100 % ASK modulation, as type A requires
        self._write(_ModeReg, 0x3D)  # CRC preset 0x6363
        tx = self._read(_TxControlReg)
        if tx & 0x03 != 0x03:
            self._write(_TxControlReg, tx | 0x03)  # antenna on (TX1 and TX2)
        self._seen_len = 0
        self._misses = 0

    def antenna(self, on):
        tx = self._read(_TxControlReg)
        self._write(_TxControlReg, (tx | 0x03) if on else (tx & 0xFC))

    # ---- frames --------------------------------------------------------------------------

    def _transceive(self, n, last_bits):
        """Send self._frame[:n] (`last_bits` valid bits in its last byte, 0 = 8); the answer goes
        to self._buf. Returns its length, or _NO_ANSWER / _COLLISION / _BAD_FRAME."""
        self._write(_CommandReg, _CMD_IDLE)
        self._write(_ComIrqReg, 0x7F)  # clear every interrupt request
        self._write(_FIFOLevelReg, _FLUSH)
        f = self._frame
        for i in range(n):
            self._write(_FIFODataReg, f[i])
        self._write(_BitFramingReg, last_bits)
        self._write(_CommandReg, _CMD_TRANSCEIVE)
        self._write(_BitFramingReg, _START_SEND | last_bits)
        for _ in range(_WAIT_POLLS):
            irq = self._read(_ComIrqReg)
            if irq & (_IRQ_RX | _IRQ_IDLE):
                break
            if irq & _IRQ_TIMER:
                self._write(_BitFramingReg, 0)
                return _NO_ANSWER
        else:
            self._write(_CommandReg, _CMD_IDLE)
            raise RC522Error("no_irq", "the chip's timer never fired")
        self._write(_BitFramingReg, 0)
        err = self._read(_ErrorReg)
        if err & _ERR_COLL:
            return _COLLISION
        if err & (_ERR_PROTOCOL | _ERR_PARITY | _ERR_OVERFLOW):
            return _BAD_FRAME
        got = self._read(_FIFOLevelReg)
        buf = self._buf
        if got > len(buf):
            return _BAD_FRAME
        for i in range(got):
            buf[i] = self._read(_FIFODataReg)
        self._bits = self._read(_ControlReg) & 0x07
        return got

    def _wake(self):
        """WUPA: True when a card answered with a well-formed ATQA."""
        self._frame[0] = _PICC_WUPA
        n = self._transceive(1, 7)
        if n == _NO_ANSWER:
            return False
        if n != 2 or self._bits != 0:
            return None  # something answered, garbled (two cards' ATQAs may differ)
        return True

    def _select(self):
        """Anticollision and select through the cascade levels; the UID's length, 0 on error."""
        f = self._frame
        buf = self._buf
        uid = self._uid
        length = 0
        for level in range(3):
            f[0] = _PICC_SEL_CL1 + 2 * level
            f[1] = _NVB_ANTICOLL
            n = self._transceive(2, 0)
            if n != 5:
                self.last_error = "collision" if n == _COLLISION else "anticollision"
                return 0
            if buf[0] ^ buf[1] ^ buf[2] ^ buf[3] != buf[4]:
                self.last_error = "bcc"
                return 0
            f[1] = _NVB_SELECT
            for i in range(5):
                f[2 + i] = buf[i]
            crc = crc_a(f, 7)
            f[7] = crc & 0xFF
            f[8] = crc >> 8
            n = self._transceive(9, 0)
            if n != 3 or crc_a(buf, 1) != buf[1] | (buf[2] << 8):
                self.last_error = "select"
                return 0
            more = buf[0] & _SAK_MORE
            if more:
                if f[2] != _CASCADE_TAG or level == 2:
                    self.last_error = "cascade"
                    return 0
                for i in range(3):
                    uid[length + i] = f[3 + i]
                length += 3
            else:
                for i in range(4):
                    uid[length + i] = f[2 + i]
                return length + 4
        return 0

    def _halt(self):
        f = self._frame
        f[0] = _PICC_HLTA
        f[1] = 0
        crc = crc_a(f, 2)
        f[2] = crc & 0xFF
        f[3] = crc >> 8
        self._transceive(4, 0)  # a halted card does not answer; an answer would be a NAK

    # ---- the card in the field -----------------------------------------------------------

    def read_uid(self):
        """The UID of the card in the field as upper-case hex, or None (no card, or it could
        not be read this time). No debounce: see poll()."""
        n = self._read_once()
        if n <= 0:
            return None
        return binascii.hexlify(self._uid[:n]).decode().upper()

    def _read_once(self):
        woke = self._wake()
        if woke is False:
            return 0
        if woke is None:
            self.last_error = "atqa"
            return -1
        n = self._select()
        if n == 0:
            return -1
        self._halt()
        return n

    def poll(self):
        """The UID (upper-case hex) of a card that came into the field, once per presentation;
        None otherwise. Raises RC522Error when the chip stops answering (init() again)."""
        n = self._read_once()
        if n == 0:
            if self._seen_len:
                self._misses += 1
                if self._misses >= self.release_polls:
                    self._seen_len = 0  # the card is gone: its next tap counts again
                    self._misses = 0
            return None
        if n < 0:
            self.errors += 1
            return None  # a card is there but unreadable: neither new nor gone
        self._misses = 0
        uid = self._uid
        seen = self._seen
        if n == self._seen_len:
            same = True
            for i in range(n):
                if uid[i] != seen[i]:
                    same = False
                    break
            if same:
                return None
        for i in range(n):
            seen[i] = uid[i]
        self._seen_len = n
        return binascii.hexlify(uid[:n]).decode().upper()
