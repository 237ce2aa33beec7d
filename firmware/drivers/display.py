# What the driver sees at the charger, behind one small interface:
#
#     display.show(state, wh, cost_fen, remaining_fen, error)
#
# state: controller.Controller.display_state() ("available", "tap_card", "charging", ...);
# wh: energy of the session (or of the last one) in Wh; cost_fen / remaining_fen: money in fen
# (0.01 CNY), None when there is nothing to show; error: a short machine reason or None.
#
# Two implementations: `OledDisplay` on an SSD1306 128x64 (or 128x32) OLED over I2C, and
# `LedDisplay`, a green and a red LED for a charger without a screen. `lines()` is the text the
# screen shows, pure, so it is tested everywhere. The SSD1306 driver is our own: the power-up
# sequence of the controller's datasheet, a frame buffer allocated once (MicroPython's
# `framebuf` draws the 8x8 font into it) and one I2C write per refresh.

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

COLUMNS = const(16)  # 128 px / 8 px font

_LABELS = {
    "available": "READY",
    "tap_card": "TAP CARD",
    "plug_in": "PLUG IN",
    "ready": "CONNECT VEHICLE",
    "authorizing": "CHECKING CARD",
    "preparing": "PREPARING",
    "charging": "CHARGING",
    "suspended_ev": "PAUSED BY CAR",
    "finishing": "DONE - UNPLUG",
    "faulted": "FAULT",
    "unavailable": "OUT OF SERVICE",
}


def label(state):
    return _LABELS.get(state, state.upper()[:COLUMNS])


def kwh_text(wh):
    """Wh as kWh with three decimals: 12345 -> '12.345 kWh'."""
    return "%d.%03d kWh" % (wh // 1000, wh % 1000)


def money_text(fen):
    """fen as yuan: 1234 -> '12.34'; negative amounts keep their sign."""
    sign = "-" if fen < 0 else ""
    fen = -fen if fen < 0 else fen
    return "%s%d.%02d" % (sign, fen // 100, fen % 100)


def lines(state, wh, cost_fen, remaining_fen, error, rows=8):
    """The screen as text lines of at most 16 characters (the first `rows` of them)."""
    out = [label(state)]
    if state in ("charging", "suspended_ev", "finishing") or wh:
        out.append(kwh_text(wh or 0))
    if cost_fen is not None:
        out.append(("Cost " + money_text(cost_fen) + " CNY")[:COLUMNS])
    if remaining_fen is not None:
        out.append(("Left " + money_text(remaining_fen) + " CNY")[:COLUMNS])
    if error:
        err = str(error)
        out.append("ERR " + err[:COLUMNS - 4])
        if len(err) > COLUMNS - 4:
            out.append(err[COLUMNS - 4:COLUMNS - 4 + COLUMNS])
    return out[:rows]


# ---- SSD1306 ---------------------------------------------------------------------------------

_SET_CONTRAST = const(0x81)
_ENTIRE_ON_RESUME = const(0xA4)
_NORMAL = const(0xA6)
_DISPLAY_OFF = const(0xAE)
_DISPLAY_ON = const(0xAF)
_MEMORY_MODE = const(0x20)
_COLUMN_ADDR = const(0x21)
_PAGE_ADDR = const(0x22)
_START_LINE = const(0x40)
_SEG_REMAP = const(0xA1)  # column 127 is SEG0: the usual module mounting
_MUX_RATIO = const(0xA8)
_COM_SCAN_DEC = const(0xC8)
_DISPLAY_OFFSET = const(0xD3)
_COM_PINS = const(0xDA)
_CLOCK_DIV = const(0xD5)
_PRECHARGE = const(0xD9)
_VCOM_DESELECT = const(0xDB)
_CHARGE_PUMP = const(0x8D)

_CTRL_CMD = const(0x80)  # control byte: one command byte follows
_CTRL_DATA = const(0x40)  # control byte: display data follows to the end of the transfer


def init_sequence(width, height, external_vcc=False):
    """The SSD1306 power-up commands (datasheet, application example), as one bytes object."""
    return bytes((
        _DISPLAY_OFF,
        _MEMORY_MODE, 0x00,  # horizontal addressing: pages left to right, then down
        _START_LINE | 0x00,
        _SEG_REMAP,
        _MUX_RATIO, height - 1,
        _COM_SCAN_DEC,
        _DISPLAY_OFFSET, 0x00,
        _COM_PINS, 0x02 if width > 2 * height else 0x12,  # 128x32: sequential; 128x64: alternative
        _CLOCK_DIV, 0x80,
        _PRECHARGE, 0x22 if external_vcc else 0xF1,
        _VCOM_DESELECT, 0x30,  # 0.83 x Vcc
        _SET_CONTRAST, 0xFF,
        _ENTIRE_ON_RESUME,
        _NORMAL,
        _CHARGE_PUMP, 0x10 if external_vcc else 0x14,
        _DISPLAY_ON,
    ))


class Ssd1306:
    """SSD1306 over I2C. `buf` is the frame, one byte per 8 vertical pixels (MONO_VLSB, the
    controller's own layout), prefixed by the data control byte so a refresh is one write."""

    def __init__(self, i2c, addr=0x3C, width=128, height=64, external_vcc=False):
        import framebuf  # MicroPython's; drawing only

        if width % 8 or height % 8 or not (0 < width <= 128) or not (0 < height <= 64):
            raise ValueError("SSD1306 frame must be up to 128x64 in multiples of 8")
        self.i2c = i2c
        self.addr = addr
        self.width = width
        self.height = height
        self.pages = height // 8
        self.external_vcc = external_vcc
        self.buf = bytearray(1 + width * self.pages)
        self.buf[0] = _CTRL_DATA
        self.fb = framebuf.FrameBuffer(memoryview(self.buf)[1:], width, height, framebuf.MONO_VLSB)
        self._cmd = bytearray(2)
        self._cmd[0] = _CTRL_CMD
        self._window = bytes((_COLUMN_ADDR, 0, width - 1, _PAGE_ADDR, 0, self.pages - 1))
        self.init()

    def command(self, c):
        self._cmd[1] = c
        self.i2c.writeto(self.addr, self._cmd)

    def init(self):
        for c in init_sequence(self.width, self.height, self.external_vcc):
            self.command(c)
        self.fb.fill(0)
        self.refresh()

    def power(self, on):
        self.command(_DISPLAY_ON if on else _DISPLAY_OFF)

    def contrast(self, level):
        self.command(_SET_CONTRAST)
        self.command(level & 0xFF)

    def refresh(self):
        """Send the whole frame: the address window, then the data in one transfer."""
        for c in self._window:
            self.command(c)
        self.i2c.writeto(self.addr, self.buf)


class OledDisplay:
    """The status screen on an SSD1306. Redraws only when what it shows changed."""

    def __init__(self, ssd):
        self.ssd = ssd
        self.rows = ssd.height // 8
        self._last = None
        self.refreshes = 0

    def show(self, state, wh, cost_fen, remaining_fen, error):
        text = lines(state, wh, cost_fen, remaining_fen, error, self.rows)
        if text == self._last:
            return
        self._last = text
        fb = self.ssd.fb
        fb.fill(0)
        y = 0
        for i in range(len(text)):
            if i == 0:
                fb.fill_rect(0, 0, self.ssd.width, 8, 1)  # the state on an inverted bar
                fb.text(text[0], 0, 0, 0)
            else:
                fb.text(text[i], 0, y, 1)
            y += 8
        self.ssd.refresh()
        self.refreshes += 1


# ---- LEDs ------------------------------------------------------------------------------------

# state -> (green, red); "blink" alternates on each show() (the display task calls it ~2x/s)
_LED = {
    "available": (1, 0),
    "tap_card": ("blink", 0),
    "plug_in": ("blink", 0),
    "ready": ("blink", 0),
    "authorizing": ("blink", "blink"),
    "preparing": ("blink", 0),
    "charging": ("blink", 0),
    "suspended_ev": (1, 0),
    "finishing": (1, 0),
    "faulted": (0, 1),
    "unavailable": (0, "blink"),
}


class LedDisplay:
    """A green and a red LED: green steady ready, green blinking busy (preparing, charging),
    red steady fault, red blinking out of service; an error while usable lights both."""

    def __init__(self, green, red):
        self.green = green  # objects with value(v), e.g. machine.Pin outputs
        self.red = red
        self._phase = 0

    def show(self, state, wh, cost_fen, remaining_fen, error):
        self._phase ^= 1
        g, r = _LED.get(state, (0, 1))
        if error and r == 0:
            r = 1
        self.green.value(self._phase if g == "blink" else g)
        self.red.value(self._phase if r == "blink" else r)
