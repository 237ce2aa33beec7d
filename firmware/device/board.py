# The ESP32 edge: the board description (hardware/board/esp32_devkitc.json, stored on the
# device as /board.json) mapped to machine.Pin / PWM / ADC / UART / SPI / I2C / WDT. Nothing
# else in the firmware touches `machine`.
#
# Objects handed to the pure logic:
#   Outputs(pilot, contactor)   the controller's outputs: .pilot(duty_u16), .contactor(closed)
#   PilotDriver.sample()        fills .pos_mv / .neg_mv (ADC mV of the two plateaus)
#   Contactor.feedback()        the auxiliary contact, True when it reports closed (None: none)
#   Button.pressed(now_ms)      True once per debounced press
#   Board.rs485(serial)         uart_transport.UartTransport for the meter drivers
#   Board.card_reader()         rc522.RC522 on the card reader's SPI bus (None: no reader fitted)
import json

import machine

from chargepoint import Outputs  # noqa: F401 (the controller's outputs, shared with host simulations)
from clock import ticks_diff
from uart_transport import UartTransport

_ATTN = {0: "ATTN_0DB", 2: "ATTN_2_5DB", 6: "ATTN_6DB", 11: "ATTN_11DB"}
_PARITY = {"N": None, "E": 0, "O": 1}


def load(path):
    with open(path) as f:
        return json.load(f)


def _pull(name):
    if name is None:
        return None
    if name == "up":
        return machine.Pin.PULL_UP
    if name == "down":
        return machine.Pin.PULL_DOWN
    raise ValueError("pull must be up, down or null, not %r" % (name,))


class PilotDriver:
    """The 1 kHz pilot output (PWM into the +-12 V op-amp stage) and its sensing ADC.

    The ADC cannot be synchronised with the PWM on MicroPython, so `sample()` takes a burst of
    `samples` readings spanning several PWM periods and keeps the highest (positive plateau)
    and the lowest (negative plateau). With steady +12 V or -12 V both are the same level."""

    def __init__(self, cfg):
        self.pin = machine.Pin(cfg["pwm_pin"], machine.Pin.OUT, value=0)
        # start at 100 % duty: steady +12 V, no current offered (state A/B1)
        self.pwm = machine.PWM(self.pin, freq=cfg.get("pwm_freq_hz", 1000), duty_u16=65535)
        self.adc = machine.ADC(machine.Pin(cfg["adc_pin"]))
        atten = cfg.get("adc_atten_db", 11)
        if atten not in _ATTN:
            raise ValueError("adc_atten_db must be 0, 2, 6 or 11")
        self.adc.atten(getattr(machine.ADC, _ATTN[atten]))
        self.samples = cfg.get("samples", 64)
        if self.samples < 8:
            raise ValueError("need at least 8 ADC samples per pilot reading")
        self.p12 = cfg.get("adc_mv_at_p12")
        self.m12 = cfg.get("adc_mv_at_m12")
        self.duty = 65535
        self.pos_mv = 0
        self.neg_mv = 0

    def pilot(self, duty_u16):
        self.duty = duty_u16
        self.pwm.duty_u16(duty_u16)

    def sample(self):
        """Burst-sample the sensing ADC; no allocation (a bound method would allocate, so the
        ADC is called through the object)."""
        adc = self.adc
        hi = -1
        lo = 0x3FFFFFFF
        for _ in range(self.samples):
            v = adc.read_uv()
            if v > hi:
                hi = v
            if v < lo:
                lo = v
        self.pos_mv = hi // 1000
        self.neg_mv = lo // 1000

    def calibration(self):
        """pilot.PilotCalibration of this board (the divider's defaults unless measured)."""
        import pilot
        return pilot.PilotCalibration(self.p12, self.m12)


class Contactor:
    """Relay (or SSR) driving the contactor coil, and its auxiliary (feedback) contact."""

    def __init__(self, cfg):
        self.active = 1 if cfg.get("relay_active_high", True) else 0
        self.relay = machine.Pin(cfg["relay_pin"], machine.Pin.OUT, value=1 - self.active)
        self.closed = False
        fb = cfg.get("feedback_pin")
        self.fb = None
        if fb is not None:
            pull = _pull(cfg.get("feedback_pull"))
            if pull is None:
                self.fb = machine.Pin(fb, machine.Pin.IN)
            else:
                self.fb = machine.Pin(fb, machine.Pin.IN, pull)
            self.fb_closed = cfg.get("feedback_closed_level", 0)

    def contactor(self, closed):
        self.closed = bool(closed)
        self.relay.value(self.active if closed else 1 - self.active)

    def feedback(self):
        if self.fb is None:
            return None
        return self.fb.value() == self.fb_closed


class Button:
    """A push button to ground (internal pull-up): `pressed(now_ms)` is True once for each
    press that held its level for `debounce_ms`."""

    def __init__(self, cfg):
        pull = _pull(cfg.get("pull", "up"))
        if pull is None:
            self.pin = machine.Pin(cfg["pin"], machine.Pin.IN)
        else:
            self.pin = machine.Pin(cfg["pin"], machine.Pin.IN, pull)
        self.level = cfg.get("pressed_level", 0)
        self.debounce_ms = cfg.get("debounce_ms", 50)
        self._down = False
        self._since = None  # when the raw level last differed from the accepted one

    def pressed(self, now_ms):
        raw = self.pin.value() == self.level
        if raw == self._down:
            self._since = None
            return False
        if self._since is None:
            self._since = now_ms
            return False
        if ticks_diff(now_ms, self._since) < self.debounce_ms:
            return False
        self._down = raw
        self._since = None
        return raw


class Led:
    def __init__(self, pin, active_high=True):
        self.on = 1 if active_high else 0
        self.pin = machine.Pin(pin, machine.Pin.OUT, value=1 - self.on)

    def value(self, v):
        self.pin.value(self.on if v else 1 - self.on)


class Board:
    def __init__(self, desc):
        if desc.get("v") != 1:
            raise ValueError("board description must have \"v\": 1")
        self.desc = desc

    @classmethod
    def from_file(cls, path="board.json"):
        return cls(load(path))

    def pilot(self):
        return PilotDriver(self.desc["pilot"])

    def contactor(self):
        return Contactor(self.desc["contactor"])

    def stop_button(self):
        return Button(self.desc["stop_button"])

    def leds(self):
        d = self.desc["leds"]
        high = d.get("active_high", True)
        return Led(d["green_pin"], high), Led(d["red_pin"], high)

    def rs485(self, serial):
        """The meter's RS-485 line with the line settings of its register map."""
        d = self.desc["rs485"]
        parity = serial.get("parity", "N")
        if parity not in _PARITY:
            raise ValueError("parity must be N, E or O")
        baud = serial.get("baud", 9600)
        bits = serial.get("data_bits", 8)
        stop = serial.get("stop_bits", 1)
        uart = machine.UART(d["uart"], baudrate=baud, bits=bits, parity=_PARITY[parity], stop=stop,
                            tx=d["tx_pin"], rx=d["rx_pin"], rxbuf=d.get("rx_buffer", 512), timeout=0)
        de = None
        if d.get("de_re_pin") is not None:
            de = machine.Pin(d["de_re_pin"], machine.Pin.OUT, value=0)
        return UartTransport(uart, de, baud, bits, _PARITY[parity], stop)

    def spi(self):
        """The card reader's SPI bus, its chip select (idle high) and reset (released)."""
        d = self.desc["card_reader"]
        spi = machine.SPI(d["spi"], baudrate=d.get("baudrate", 5000000), polarity=0, phase=0,
                          sck=machine.Pin(d["sck_pin"]), mosi=machine.Pin(d["mosi_pin"]),
                          miso=machine.Pin(d["miso_pin"]))
        cs = machine.Pin(d["cs_pin"], machine.Pin.OUT, value=1)
        rst = machine.Pin(d["rst_pin"], machine.Pin.OUT, value=1)
        return spi, cs, rst

    def card_reader(self):
        """The card reader board.json names (not yet initialised: RC522.init() talks to it), or
        None when the board has none. Only the RC522 is driven so far."""
        d = self.desc.get("card_reader")
        if not d:
            return None
        chip = d.get("chip", "RC522")
        if chip != "RC522":
            raise ValueError("card reader chip %s is not supported (RC522 only)" % chip)
        import rc522
        spi, cs, rst = self.spi()
        return rc522.RC522(spi, cs, rst)

    def i2c(self):
        d = self.desc["display"]
        return machine.I2C(d.get("i2c", 0), scl=machine.Pin(d["scl_pin"]), sda=machine.Pin(d["sda_pin"]),
                           freq=d.get("freq_hz", 400000))

    def display_config(self):
        return self.desc.get("display")

    def watchdog(self):
        return machine.WDT(timeout=self.desc.get("watchdog", {}).get("timeout_ms", 8000))
