"""The hardware bench: the charger's simulated hardware in the test's (CPython) process, reached
by the MicroPython fakes in tests/device/mpfakes/ over a loopback TCP line protocol.

On the bench: hwsim's Modbus RTU meter (its energy register runs in real time while the relay is
closed and the vehicle draws), the control pilot circuit (following the PWM duty the firmware
sets), an MFRC522 card reader with cards to tap, the contactor's auxiliary contact (follows the
relay), the stop button, the Wi-Fi access point, its DNS and the NTP server. The test plugs the
vehicle, taps cards, presses the button, switches the network, and reads what the firmware did.

Protocol (one ASCII line each way, see benchlink.py): told lines `pin N L`, `pwm N DUTY`,
`uart ID BAUD BITS PARITY STOP`, `wdt TIMEOUT`, `feed`, `wifi connect SSID`, `wifi disconnect`;
asked lines and their answers `pin? N` -> `0|1`, `adc? N` -> `POS_MV NEG_MV|- DUTY`,
`uart> ID HEX` -> the meter's reply `HEX` (empty: none), `spi> ID HEX` -> `HEX`, `wifi?` -> `0|1`,
`dns NAME` -> `IP|-`, `ntp HOST` -> `ok|timeout`. A power cut (the device process killed) drops
the link; the relay falls open, as a de-energised coil does.
"""

from __future__ import annotations

import socket
import threading
import time

from hwsim.cardreader import Rc522Sim
from hwsim.meters import EnergyCounter, ModbusMeterSim, load_regmap
from hwsim.pilot import PilotSim


class HardwareBench:
    def __init__(self, board: dict, regmap: dict | None = None, meter_wh: float = 3_000_000, power_w: float = 7400.0):
        self.board = board
        self.counter = EnergyCounter(wh=meter_wh, clock=time.monotonic)
        self.meter = ModbusMeterSim(regmap or load_regmap("eastron_sdm120"), counter=self.counter)
        self.pilot = PilotSim()
        self.chip = Rc522Sim()
        self.power_w = power_w
        self.relay_pin = board["contactor"]["relay_pin"]
        self.relay_on = 1 if board["contactor"].get("relay_active_high", True) else 0
        self.feedback_pin = board["contactor"].get("feedback_pin")
        self.feedback_closed = board["contactor"].get("feedback_closed_level", 0)
        self.button_pin = board["stop_button"]["pin"]
        self.button_pressed_level = board["stop_button"].get("pressed_level", 0)
        self.pwm_pin = board["pilot"]["pwm_pin"]
        self.de_pin = board["rs485"].get("de_re_pin")
        reader = board.get("card_reader") or {}
        self.cs_pin, self.rst_pin = reader.get("cs_pin"), reader.get("rst_pin")
        self.pins: dict[int, int] = {}
        self.duty = 65535
        self.button_down = False
        self.wifi_available = True
        self.wifi_joined = False
        self.wifi_connects = 0
        self.dns: dict[str, str] = {}
        self.dns_queries: list[str] = []
        self.ntp_ok = True
        self.feeds = 0
        self.links = 0  # device connections (boots) seen
        self.open_links = 0
        self.frames = 0  # meter requests answered
        self.unanswered_frames = 0  # meter requests sent while the RS-485 driver was off
        self._lock = threading.RLock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(4)
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    # ---- what the test does -------------------------------------------------------------

    def plug(self, state: str = "B") -> None:
        """The vehicle's pilot state: A unplugged, B connected, C/D charging, E short."""
        with self._lock:
            self.pilot.set_vehicle(state)
            self._energy()

    def tap(self, uid: str, seconds: float = 1.0) -> None:
        """Hold a card in the reader's field for `seconds`."""
        self.chip.present(uid)
        threading.Timer(seconds, self.chip.remove).start()

    def press(self, seconds: float = 0.3) -> None:
        """Press the stop button for `seconds`."""
        self.button_down = True
        threading.Timer(seconds, lambda: setattr(self, "button_down", False)).start()

    @property
    def relay_closed(self) -> bool:
        return self.pins.get(self.relay_pin) == self.relay_on

    @property
    def meter_wh(self) -> int:
        return int(self.counter.wh)

    def close(self) -> None:
        self._closed = True
        self._server.close()

    # ---- the hardware -------------------------------------------------------------------

    def _energy(self) -> None:
        flowing = self.relay_closed and self.pilot.vehicle in ("C", "D")
        self.counter.set_power(self.power_w if flowing else 0.0)

    def _power_cut(self) -> None:
        with self._lock:
            self.pins.clear()
            self.duty = 65535
            self.wifi_joined = False
            self.chip._hard_reset(0)
            self._energy()

    def _pin(self, n: int, level: int) -> None:
        self.pins[n] = level
        if n == self.relay_pin:
            self._energy()
        elif n == self.cs_pin:
            self.chip._chip_select(level)
        elif n == self.rst_pin:
            self.chip._hard_reset(level)

    def _read_pin(self, n: int) -> int:
        if n == self.feedback_pin:
            return self.feedback_closed if self.relay_closed else 1 - self.feedback_closed
        if n == self.button_pin:
            return self.button_pressed_level if self.button_down else 1 - self.button_pressed_level
        return self.pins.get(n, 0)

    def _adc(self) -> str:
        self.pilot.set_evse("+12" if self.duty == 65535 else "-12" if self.duty == 0 else "pwm")
        pos, neg = self.pilot.read()
        return f"{pos} {'-' if neg is None else neg} {self.duty}"

    def _uart(self, frame: bytes) -> str:
        if self.de_pin is not None and self.pins.get(self.de_pin) != 1:
            self.unanswered_frames += 1  # the transceiver was not driving the line
            return ""
        self.frames += 1
        reply = self.meter.handle(frame)
        return reply.hex() if reply else ""

    def handle(self, line: str) -> str | None:
        """One line from the device; the answer for an asked line, None for a told one."""
        cmd, _, rest = line.partition(" ")
        args = rest.split()
        with self._lock:
            if cmd == "pin":
                self._pin(int(args[0]), int(args[1]))
            elif cmd == "pwm":
                if int(args[0]) == self.pwm_pin:
                    self.duty = int(args[1])
            elif cmd == "pin?":
                return str(self._read_pin(int(args[0])))
            elif cmd == "adc?":
                return self._adc()
            elif cmd == "uart>":
                return self._uart(bytes.fromhex(args[1]))
            elif cmd == "spi>":
                try:
                    return self.chip.transfer(bytes.fromhex(args[1])).hex()
                except OSError:
                    return "00" * (len(args[1]) // 2)  # clocked without chip select: MISO floats
            elif cmd == "wifi":
                if args[0] == "connect":
                    self.wifi_connects += 1
                    self.wifi_joined = self.wifi_available
                else:
                    self.wifi_joined = False
            elif cmd == "wifi?":
                return "1" if self.wifi_joined and self.wifi_available else "0"
            elif cmd == "dns":
                self.dns_queries.append(args[0])
                return self.dns.get(args[0], "-") if self.wifi_joined else "-"
            elif cmd == "ntp":
                return "ok" if self.ntp_ok and self.wifi_joined else "timeout"
            elif cmd == "feed":
                self.feeds += 1
            elif cmd in ("uart", "wdt"):
                pass
            else:
                raise ValueError(f"the bench does not know {line!r}")
        return None

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.links += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        self.open_links += 1
        f = conn.makefile("rb")
        try:
            for raw in f:
                answer = self.handle(raw.decode().rstrip("\n"))
                if answer is not None:
                    conn.sendall(answer.encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()
            self._power_cut()
            self.open_links -= 1
