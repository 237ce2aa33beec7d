"""Simulated RFID card reader: a queue of card UIDs that the charger polls.

`tap(uid)` puts a card in front of the reader (ISO 14443 UIDs are 4, 7 or 10 bytes; given as
bytes or a hex string); `poll()` returns the next UID as bytes, or None when no card is waiting.
`poll_hex()` gives the upper-case hex form the receipt's `id_token` uses. Thread-safe, so a test
or a demo console can tap cards while the charger loop polls.
"""

from __future__ import annotations

import threading
from collections import deque

UID_LENGTHS = (4, 7, 10)


def _uid_bytes(uid: bytes | bytearray | str) -> bytes:
    if isinstance(uid, str):
        try:
            raw = bytes.fromhex(uid)
        except ValueError:
            raise ValueError(f"card UID {uid!r} is not hex") from None
    else:
        raw = bytes(uid)
    if len(raw) not in UID_LENGTHS:
        raise ValueError(f"card UID must be 4, 7 or 10 bytes, got {len(raw)}")
    return raw


class CardReaderSim:
    def __init__(self) -> None:
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self.polls = 0

    def tap(self, uid: bytes | bytearray | str) -> None:
        raw = _uid_bytes(uid)
        with self._lock:
            self._queue.append(raw)

    def poll(self) -> bytes | None:
        with self._lock:
            self.polls += 1
            return self._queue.popleft() if self._queue else None

    def poll_hex(self) -> str | None:
        uid = self.poll()
        return None if uid is None else uid.hex().upper()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)


# ---- an MFRC522 on a simulated SPI bus --------------------------------------------------------

def crc_a(data: bytes) -> int:
    """CRC_A of ISO/IEC 14443-3 annex B (written bit by bit, apart from the firmware's version)."""
    crc = 0x6363
    for byte in data:
        for bit in range(8):
            mix = (crc ^ (byte >> bit)) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8408
    return crc


class Card:
    """An ISO/IEC 14443-3 type A card (PICC): IDLE -> READY (REQA/WUPA) -> ACTIVE (SELECT at the
    last cascade level) -> HALT (HLTA); out of the field it loses power and is IDLE again."""

    def __init__(self, uid: bytes | bytearray | str, sak: int = 0x08) -> None:
        self.uid = _uid_bytes(uid)
        self.sak = sak
        self.state = "IDLE"
        self.level = 0  # cascade level being resolved while READY

    def levels(self) -> list[bytes]:
        u = self.uid
        if len(u) == 4:
            return [u]
        if len(u) == 7:
            return [b"\x88" + u[:3], u[3:]]
        return [b"\x88" + u[:3], b"\x88" + u[3:6], u[6:]]

    def answer(self, frame: bytes, bits: int) -> bytes | None:
        """The card's answer to one frame (`bits` valid bits in the last byte, 0 = 8)."""
        if bits == 7 and len(frame) == 1:
            if frame[0] == 0x52 and self.state in ("IDLE", "HALT", "READY") or \
                    frame[0] == 0x26 and self.state in ("IDLE", "READY"):
                self.state, self.level = "READY", 0
                return bytes([(0x00, 0x40, 0x80)[len(self.levels()) - 1] | 0x04, 0x00])  # ATQA
            return None
        if bits != 0 or not frame:
            self._unexpected()
            return None
        sel = (0x93, 0x95, 0x97)
        if self.state == "READY" and frame[0] in sel and sel.index(frame[0]) == self.level:
            part = self.levels()[self.level]
            bcc = part[0] ^ part[1] ^ part[2] ^ part[3]
            if frame[1:] == b"\x20":
                return part + bytes([bcc])
            if len(frame) == 9 and frame[1] == 0x70 and frame[2:7] == part + bytes([bcc]):
                if crc_a(frame[:7]) != frame[7] | frame[8] << 8:
                    return None  # a frame with a bad CRC is not answered
                last = self.level == len(self.levels()) - 1
                sak = self.sak if last else 0x04
                if last:
                    self.state = "ACTIVE"
                else:
                    self.level += 1
                c = crc_a(bytes([sak]))
                return bytes([sak, c & 0xFF, c >> 8])
            self._unexpected()
            return None
        if self.state == "ACTIVE" and frame[:2] == b"\x50\x00" and len(frame) == 4 \
                and crc_a(frame[:2]) == frame[2] | frame[3] << 8:
            self.state = "HALT"
            return None
        self._unexpected()
        return None

    def _unexpected(self) -> None:
        self.state = "HALT" if self.state == "HALT" else "IDLE"


class Rc522Sim:
    """The MFRC522's SPI side as its datasheet describes it: two-byte register accesses framed by
    chip select, the 64-byte FIFO, soft reset (PowerDown while it runs), the Transceive command
    started by BitFramingReg.StartSend, ComIrqReg/ErrorReg/ControlReg after each frame, the
    antenna (TxControlReg bits 0-1: cards get no power without it) and the cards in the field.

    Hand `spi`, `cs` and `rst` to the firmware's rc522.RC522. `present(uid)` brings a card into
    the field (several at once give a bit collision), `remove()` takes them away. `frames`
    records what the reader sent (bytes, valid bits of the last byte); `noise` garbles the
    next N answers with a parity error."""

    VERSION = 0x92

    def __init__(self, version: int = VERSION, reset_polls: int = 2) -> None:
        self.version = version
        self.reset_polls = reset_polls
        self.cards: list[Card] = []
        self.frames: list[tuple[bytes, int]] = []
        self.noise = 0
        self.powered = True
        self.accesses = 0
        self._lock = threading.Lock()
        self._selected = False
        self._addr: int | None = None
        self._reset()
        self.spi = _SimSpi(self)
        self.cs = _SimPin(self._chip_select)
        self.rst = _SimPin(self._hard_reset)

    # the world
    def present(self, uid: bytes | bytearray | str, sak: int = 0x08) -> Card:
        with self._lock:
            card = Card(uid, sak)
            self.cards.append(card)
            return card

    def remove(self) -> None:
        with self._lock:
            self.cards = []

    # the chip
    def _reset(self) -> None:
        self.regs = bytearray(64)
        self.regs[0x01] = 0x20 | 0x10  # CommandReg: PowerDown until the reset has run
        self.regs[0x0D] = 0x00
        self.regs[0x14] = 0x80  # TxControlReg: antenna off
        self.regs[0x37] = self.version
        self.fifo = bytearray()
        self._reset_left = self.reset_polls

    def _hard_reset(self, level: int) -> None:
        self.powered = bool(level)
        if self.powered:
            self._reset()

    def _chip_select(self, level: int) -> None:
        self._selected = not level
        self._addr = None

    def transfer(self, mosi: bytes) -> bytes:
        if not self._selected:
            raise OSError("SPI transfer without chip select")
        miso = bytearray()
        with self._lock:
            for b in mosi:
                miso.append(self._byte(b))
        return bytes(miso)

    def _byte(self, b: int) -> int:
        if not self.powered:
            return 0x00
        if self._addr is None:
            self._addr = b
            return 0x00
        addr = self._addr
        reg = (addr >> 1) & 0x3F
        self.accesses += 1
        if addr & 0x80:
            self._addr = b  # the next byte names the next register to read
            return self._read(reg)
        self._write(reg, b)
        return 0x00

    def _read(self, reg: int) -> int:
        if reg == 0x09:
            return self.fifo.pop(0) if self.fifo else 0
        if reg == 0x0A:
            return min(len(self.fifo), 64)
        if reg == 0x01 and self.regs[0x01] & 0x10 and self._reset_left is not None:
            self._reset_left -= 1
            if self._reset_left < 0:
                self.regs[0x01] &= ~0x10 & 0xFF
                self._reset_left = None
        return self.regs[reg]

    def _write(self, reg: int, v: int) -> None:
        if reg == 0x01:
            cmd = v & 0x0F
            if cmd == 0x0F:
                self._reset()
                return
            self.regs[0x01] = (self.regs[0x01] & 0xF0) | cmd
            return
        if reg == 0x04:  # ComIrqReg: bit 7 set sets the marked bits, clear clears them
            mask = v & 0x7F
            self.regs[0x04] = (self.regs[0x04] | mask) if v & 0x80 else (self.regs[0x04] & ~mask & 0xFF)
            return
        if reg == 0x09:
            if len(self.fifo) < 64:
                self.fifo.append(v)
            else:
                self.regs[0x06] |= 0x10  # BufferOvfl
            return
        if reg == 0x0A:
            if v & 0x80:
                self.fifo = bytearray()
                self.regs[0x06] &= ~0x10 & 0xFF
            return
        self.regs[reg] = v
        if reg == 0x0D and v & 0x80 and self.regs[0x01] & 0x0F == 0x0C:
            self._transceive(v & 0x07)

    def _transceive(self, last_bits: int) -> None:
        frame = bytes(self.fifo)
        self.fifo = bytearray()
        self.frames.append((frame, last_bits))
        self.regs[0x06] = 0
        self.regs[0x0C] &= 0xF8
        answers = []
        if self.regs[0x14] & 0x03 == 0x03:  # the antenna powers the cards
            for card in self.cards:
                a = card.answer(frame, last_bits)
                if a is not None:
                    answers.append(a)
        if not answers:
            self.regs[0x04] |= 0x01  # TimerIRq: nothing came back
            return
        if len(set(answers)) > 1:
            self.regs[0x06] |= 0x08  # CollErr: bits differ between the cards
            self.regs[0x04] |= 0x20 | 0x02
            self.fifo = bytearray(answers[0])
            return
        if self.noise:
            self.noise -= 1
            self.regs[0x06] |= 0x02  # ParityErr
        self.fifo = bytearray(answers[0])
        self.regs[0x04] |= 0x20  # RxIRq


class _SimPin:
    def __init__(self, on_change) -> None:
        self.level = 1
        self._on_change = on_change

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        self._on_change(self.level)
        return None


class _SimSpi:
    """machine.SPI's calls that a driver uses: write, read, readinto, write_readinto."""

    def __init__(self, chip: Rc522Sim) -> None:
        self.chip = chip

    def write(self, buf) -> None:
        self.chip.transfer(bytes(buf))

    def read(self, n: int, write: int = 0) -> bytes:
        return self.chip.transfer(bytes([write]) * n)

    def readinto(self, buf, write: int = 0) -> None:
        buf[:] = self.chip.transfer(bytes([write]) * len(buf))

    def write_readinto(self, out, into) -> None:
        if len(out) != len(into):
            raise ValueError("write_readinto needs buffers of one length")
        into[:] = self.chip.transfer(bytes(out))
