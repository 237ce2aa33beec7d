"""The device app's card task (firmware/device/app.py card_step) with the RC522 built from
board.json on the fake machine.SPI, wired to an emulated MFRC522: the reader is set up (only
while the contactor is open, again after the chip stopped answering), a tap reaches the
authorization flow once, and without bureau keys or a broker the card is refused."""

from __future__ import annotations

from hwsim.cardreader import Rc522Sim
from tests.device import fakes
from tests.device.test_main import make_app, run_control


def wire_chip(device):
    chip = Rc522Sim()

    class ChipSpi(fakes.SPI):
        def _frame(self, out):
            chip._chip_select(fakes.HW.pins[5].level)  # CS is GPIO5 (board.json), low = selected
            return chip.transfer(bytes(out))

        def write(self, buf):
            self._frame(buf)

        def write_readinto(self, out, into):
            into[:] = self._frame(out)

    device.machine.SPI = ChipSpi
    return chip


def test_card_taps_reach_the_authorization_flow(device, tmp_path):
    chip = wire_chip(device)
    hw = device.hw
    app_mod, app = make_app(device, tmp_path)
    run_control(app, hw, 500, vehicle="B")
    app.card_step(app.ticks())
    assert app.reader_up and app.reader.version == 0x92
    assert hw.spis[-1].id == 2 and hw.spis[-1].config["sck"] == 18 and hw.pins[13].level == 1
    assert "card reader: RC522 version 0x92" in app.logs
    chip.present("04A1B2C3D4E5F6")
    app.ticks.advance(app_mod.CARD_MS)
    app.card_step(app.ticks())
    # no broker and no bureau.json: the offline list cannot decide; the driver is told
    assert app.flow.decisions == 1 and app.flow.last["reason"] == "not_provisioned"
    assert app.ctl.error == "denied:not_provisioned" and hw.pins[26].level == 0
    for _ in range(5):
        app.ticks.advance(app_mod.CARD_MS)
        app.card_step(app.ticks())
    assert app.flow.decisions == 1  # one tap, one decision

    # the chip browns out while a session runs: no re-init until the contactor is open
    app.ctl.authorize(1, "04A1B2C3", "W-1001", 100_000, "auth-1", app.ticks())
    run_control(app, hw, 500, vehicle="C")
    assert hw.pins[26].level == 1
    chip.rst.value(0)
    app.card_step(app.ticks())
    assert not app.reader_up and "card reader: no_irq: the chip's timer never fired" in app.logs
    chip.rst.value(1)
    for _ in range(20):
        app.ticks.advance(app_mod.CARD_MS)
        app.card_step(app.ticks())
    assert not app.reader_up
    run_control(app, hw, 500, vehicle="A")
    app.ticks.advance(5000)
    app.card_step(app.ticks())
    assert app.reader_up


def test_a_missing_chip_is_retried_with_backoff(device, tmp_path):
    chip = wire_chip(device)
    chip.version = 0x00
    chip.regs[0x37] = 0x00
    hw = device.hw
    app_mod, app = make_app(device, tmp_path)
    run_control(app, hw, 200, vehicle="A")

    for _ in range(100):  # 15 s
        app.card_step(app.ticks())
        app.ticks.advance(app_mod.CARD_MS)
    tries = sum(1 for m in app.logs if m.startswith("card reader: no_chip"))
    assert 3 <= tries <= 5 and not app.reader_up  # 1, 2, 4, 8 s apart
