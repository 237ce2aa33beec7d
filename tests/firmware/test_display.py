"""firmware/drivers/display.py: the screen's text, the LED fallback, and the SSD1306 driver under
real MicroPython (its framebuf) with a fake I2C bus that records every byte."""

from __future__ import annotations

import json

import pytest

import display
from tests.support.micropython import run_micropython


def test_lines_of_a_charging_session():
    assert display.lines("charging", 12345, 1234, 8766, None) == [
        "CHARGING", "12.345 kWh", "Cost 12.34 CNY", "Left 87.66 CNY"]
    assert display.lines("available", 0, None, None, None) == ["READY"]
    assert display.lines("finishing", 7, 1, None, None) == ["DONE - UNPLUG", "0.007 kWh", "Cost 0.01 CNY"]
    assert display.lines("tap_card", 0, None, None, "denied:unknown_card") == [
        "TAP CARD", "ERR denied:unkno", "wn_card"]
    assert display.money_text(-5) == "-0.05" and display.money_text(100000) == "1000.00"
    assert display.kwh_text(1000) == "1.000 kWh"
    # a big bill still fits the 16 columns, and rows are capped (128x32 shows 4)
    long = display.lines("charging", 123456789, 9999999, 1, "meter:no_reply", rows=4)
    assert len(long) == 4 and all(len(x) <= 16 for x in long)
    assert display.label("something_new") == "SOMETHING_NEW"


class FakePin:
    def __init__(self):
        self.levels = []

    def value(self, v):
        self.levels.append(v)


def test_led_fallback():
    g, r = FakePin(), FakePin()
    leds = display.LedDisplay(g, r)
    leds.show("available", 0, None, None, None)
    assert (g.levels[-1], r.levels[-1]) == (1, 0)
    leds.show("charging", 10, 1, 2, None)
    leds.show("charging", 20, 2, 1, None)
    assert g.levels[-2:] in ([0, 1], [1, 0]) and r.levels[-2:] == [0, 0]  # green blinks
    leds.show("faulted", 0, None, None, "diode_fault")
    assert (g.levels[-1], r.levels[-1]) == (0, 1)
    leds.show("unavailable", 0, None, None, "meter_lost")
    leds.show("unavailable", 0, None, None, "meter_lost")
    assert g.levels[-2:] == [0, 0] and sorted(r.levels[-2:]) == [0, 1]  # red blinks
    leds.show("tap_card", 0, None, None, "denied:unknown_card")
    assert r.levels[-1] == 1  # an error lights red


# From the SSD1306 datasheet (Solomon Systech, rev 1.1): command table and the "software
# initialization" flow of its application note, written out independently of the driver.
DATASHEET_INIT_128x64 = [
    0xAE,        # display off
    0x20, 0x00,  # memory addressing mode: horizontal
    0x40,        # display start line 0
    0xA1,        # segment re-map: column 127 -> SEG0
    0xA8, 0x3F,  # multiplex ratio 64
    0xC8,        # COM output scan direction: remapped
    0xD3, 0x00,  # display offset 0
    0xDA, 0x12,  # COM pins: alternative configuration (128x64)
    0xD5, 0x80,  # clock divide ratio / oscillator frequency: reset value
    0xD9, 0xF1,  # pre-charge period for the internal charge pump
    0xDB, 0x30,  # VCOMH deselect level ~0.83 Vcc
    0x81, 0xFF,  # contrast
    0xA4,        # output follows RAM
    0xA6,        # normal (not inverted)
    0x8D, 0x14,  # charge pump on
    0xAF,        # display on
]


def test_init_sequence_matches_the_datasheet():
    assert list(display.init_sequence(128, 64)) == DATASHEET_INIT_128x64
    seq32 = list(display.init_sequence(128, 32, external_vcc=True))
    assert seq32[seq32.index(0xA8) + 1] == 31 and seq32[seq32.index(0xDA) + 1] == 0x02
    assert seq32[seq32.index(0x8D) + 1] == 0x10 and seq32[seq32.index(0xD9) + 1] == 0x22


SSD1306_SCRIPT = r"""
import framebuf, display

class FakeI2C:
    def __init__(self, present=(0x3C,)):
        self.writes = []
        self.present = present
    def writeto(self, addr, buf, stop=True):
        if addr not in self.present:
            raise OSError(19)
        self.writes.append((addr, bytes(buf)))
        return len(buf)

bus = FakeI2C()
ssd = display.Ssd1306(bus, 0x3C, 128, 64)
init = [w for w in bus.writes]
print("INIT", [list(b) for _, b in init])
oled = display.OledDisplay(ssd)
bus.writes.clear()
oled.show("charging", 12345, 1234, 8766, None)
print("SHOW", [list(b) for _, b in bus.writes[:-1]], len(bus.writes[-1][1]), bus.writes[-1][1][0])
frame = bus.writes[-1][1][1:]
# what framebuf itself draws for the same screen, to compare the bytes that went out
ref = bytearray(1024)
fb = framebuf.FrameBuffer(ref, 128, 64, framebuf.MONO_VLSB)
fb.fill_rect(0, 0, 128, 8, 1)
fb.text("CHARGING", 0, 0, 0)
fb.text("12.345 kWh", 0, 8, 1)
fb.text("Cost 12.34 CNY", 0, 16, 1)
fb.text("Left 87.66 CNY", 0, 24, 1)
print("SAME", frame == bytes(ref))
print("PAGE0", list(frame[64:72]))
print("LIT", sum(1 for b in frame[128:256] if b), sum(1 for b in frame[512:] if b))
n = len(bus.writes)
oled.show("charging", 12345, 1234, 8766, None)
print("UNCHANGED", len(bus.writes) == n, oled.refreshes)
oled.show("charging", 12346, 1234, 8766, None)
print("CHANGED", len(bus.writes) > n, oled.refreshes)
try:
    display.Ssd1306(FakeI2C(present=()), 0x3C)
    print("NOACK no error")
except OSError:
    print("NOACK OSError")
small = FakeI2C(present=(0x3D,))
display.Ssd1306(small, 0x3D, 128, 32)
print("SMALL", small.writes[-1][0], len(small.writes[-1][1]))
"""


def test_ssd1306_driver_under_micropython_with_a_recording_bus():
    out = run_micropython(SSD1306_SCRIPT)
    got = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines() if " " in line}
    init = json.loads(got["INIT"])
    # every command goes as [control byte 0x80, command] to the display's address
    assert all(len(w) == 2 and w[0] == 0x80 for w in init[:-7])
    assert [w[1] for w in init[:len(DATASHEET_INIT_128x64)]] == DATASHEET_INIT_128x64
    # then the address window (columns 0-127, pages 0-7) and one data transfer of the frame
    window = [w[1] for w in init[len(DATASHEET_INIT_128x64):-1]]
    assert window == [0x21, 0, 127, 0x22, 0, 7]
    assert init[-1][0] == 0x40 and len(init[-1]) == 1025 and not any(init[-1][1:])
    show = got["SHOW"].rsplit(" ", 2)
    assert json.loads(show[0]) == [[0x80, c] for c in (0x21, 0, 127, 0x22, 0, 7)]
    assert show[1:] == ["1025", "64"]  # 0x40 data control byte, then 1024 bytes
    assert got["SAME"] == "True"
    # the state bar is inverted: columns past the text are fully lit
    assert json.loads(got["PAGE0"]) == [255] * 8
    lit_line1, lit_below = (int(x) for x in got["LIT"].split())
    assert lit_line1 > 20 and lit_below == 0  # text on page 1, nothing on pages 4-7
    assert got["UNCHANGED"] == "True 1" and got["CHANGED"] == "True 2"
    assert got["NOACK"] == "OSError"
    assert got["SMALL"] == "61 513"


def test_ssd1306_rejects_impossible_sizes():
    out = run_micropython("""
import display
class Bus:
    def writeto(self, addr, buf, stop=True):
        return len(buf)
for w, h in ((130, 64), (128, 60), (0, 8)):
    try:
        display.Ssd1306(Bus(), 0x3C, w, h)
        print("accepted", w, h)
    except ValueError:
        print("refused", w, h)
""")
    assert out.split("\n")[:3] == ["refused 130 64", "refused 128 60", "refused 0 8"]


def test_oled_needs_framebuf_which_cpython_lacks():
    with pytest.raises(ImportError):
        display.Ssd1306(object())
