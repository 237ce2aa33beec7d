# The charge point assembled: meter, charger core, pilot, contactor, controller, card reader,
# authorization flow, uplink and display, and the steps the device's tasks run. One piece of
# code for the ESP32 (firmware/device/app.py adds WiFi, NTP, DNS, the broker connection and the
# hardware watchdog around it) and for host simulations (firmware/host/chargerhost/
# simcontroller.py hands it simulated hardware and time).
#
#   point = ChargePoint(cfg, regmap, hw, flash, clock, ticks_ms, signer, urandom, firmware)
#   point.attach(client)        the MQTT client (mqtt_client.MQTTClient): makes the authorization
#                               flow and the uplink (point.uplink.step(now) is the mqtt task's)
#   point.control_step(now)     every PILOT_MS: pilot, contactor feedback, stop button; the meter
#                               and the session every METER_MS; beats the heartbeat
#   point.card_step(now)        every CARD_MS: authorization timeouts, the card reader
#   point.display_step(now)     every DISPLAY_MS
#
# `hw` is the board (firmware/device/board.py's Board, or a simulated one): rs485(serial),
# pilot() (.pilot(duty), .sample() -> .pos_mv/.neg_mv, .calibration()), contactor()
# (.contactor(closed), .feedback()), stop_button() (.pressed(now)), card_reader() (rc522.RC522
# or None), display_config(), i2c(), leds().
import authflow
import authz as authz_mod
import charger as charger_mod
import controller as controller_mod
import display as display_mod
import meter as meter_mod
import pilot as pilot_mod
import rc522
import status
import supervisor
import uplink as uplink_mod
from clock import ticks_add, ticks_diff

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

PILOT_MS = const(25)  # pilot sample period: with a debounce of 3, a change acts within 100 ms
METER_MS = const(1000)
HEARTBEAT_STALE_MS = const(3000)  # control loop silent this long: stop feeding, let it reset
DISPLAY_MS = const(500)
LOG_LINES = const(16)  # the last lines kept for a look on the device (each costs heap)
CARD_MS = const(150)  # card reader poll (an empty field costs the RC522's 5 ms timer)


class Outputs:
    """What the controller drives (see controller.py): the pilot driver and the contactor."""

    def __init__(self, pilot, contactor):
        self._pilot = pilot
        self._contactor = contactor

    def pilot(self, duty_u16):
        self._pilot.pilot(duty_u16)

    def contactor(self, closed):
        self._contactor.contactor(closed)

    def safe(self):
        """After a crash: contactor open, pilot at -12 V (state F: EVSE unavailable)."""
        self._contactor.contactor(False)
        self._pilot.pilot(0)


class ChargePoint:
    def __init__(self, cfg, regmap, hw, flash, clock, ticks_ms, signer, urandom, firmware, rand8=None,
                 verify=None):
        self.cfg = cfg
        self.hw = hw
        self.flash = flash
        self.clock = clock
        self.ticks_ms = ticks_ms
        self.firmware = firmware
        self.logs = []
        now = ticks_ms()

        # meter on RS-485; the transport samples the pilot while it waits for a reply
        serial = cfg.get("meter_serial")
        if not serial:
            raise ValueError("config.json must name the meter's serial number (meter_serial)")
        self.transport = hw.rs485(regmap.get("serial", {}))
        self.driver = meter_mod.meter_from_config(self.transport, regmap)
        identify = None
        if regmap.get("protocol") == "dlt645_2007":
            identify = self._meter_address
        self.watch = meter_mod.MeterWatch(lost_after=charger_mod.LOST_AFTER,
                                          frozen_after_ms=cfg.get("frozen_after_ms", 300000))
        self.meter = controller_mod.WatchedMeter(self.driver, self.watch, identify)

        # the charger core on flash
        self.charger = charger_mod.Charger(cfg["charger_id"], flash, self.meter, clock, signer, urandom, firmware,
                                           serial, default_tariff=cfg.get("tariff"))
        self.charger.boot()

        # pilot, contactor and the controller
        self.pilot_hw = hw.pilot()
        self.contactor_hw = hw.contactor()
        self.outputs = Outputs(self.pilot_hw, self.contactor_hw)
        monitor = pilot_mod.PilotMonitor(debounce=cfg.get("pilot_debounce", 3),
                                         calibration=self.pilot_hw.calibration())
        options = cfg.get("controller") or {}
        self.ctl = controller_mod.Controller(self.charger, monitor, self.watch, self.meter, self.outputs,
                                             current_ma=cfg.get("max_current_ma", 16000),
                                             ventilation=cfg.get("ventilation", False), **options)
        self.button = hw.stop_button()
        self.transport.idle = self._pilot_idle
        self._last_pilot = now
        self._next_meter = ticks_add(now, METER_MS)
        self.heartbeat = supervisor.Heartbeat(HEARTBEAT_STALE_MS)

        # the screen, or the LEDs when there is none (or it does not answer)
        self.display = self._make_display()

        # driver authorization: card reader, bureau requests, the signed offline list and tariff
        if verify is None:
            import ed25519
            verify = ed25519.verify
        self.authz = authz_mod.Authz(cfg["charger_id"], flash, verify, urandom)
        self.authz.load()
        if not self.authz.provisioned:
            self.log("authz: no bureau.json: offline list and tariff push cannot be verified")
        self.charger.authz = self.authz
        self.flow = None
        self.uplink = None
        self.reader: "rc522.RC522 | None" = None
        self.reader_up = False
        self._reader_fitted = True
        self._reader_next = None
        self.reader_backoff = supervisor.Backoff(1000, 60000, rand8)

    def attach(self, client):
        """The broker connection: the authorization flow listens in on it, the uplink runs
        over it."""
        c = self.charger
        prov = status.Provisioning(self.flash, c.charger_id, c.public_key(), c.meter_serial, self.firmware)
        self.flow = authflow.AuthFlow(self.authz, c, self.ctl, client, self.ticks_ms, self.log)
        self.uplink = uplink_mod.Uplink(self.flow.client, c, self.ctl, prov, self.clock, self.firmware,
                                        on_stop=self.remote_stop)

    def log(self, msg):
        self.logs.append(msg)
        if len(self.logs) > LOG_LINES:
            self.logs.pop(0)
        print(msg)

    def _meter_address(self):
        return self.driver.meter_address

    def _make_display(self):
        d = self.hw.display_config()
        if d and d.get("chip") == "SSD1306":
            try:
                ssd = display_mod.Ssd1306(self.hw.i2c(), d.get("addr", 0x3C), d.get("width", 128),
                                          d.get("height", 64))
                return display_mod.OledDisplay(ssd)
            except (OSError, ImportError) as e:  # no display on the bus, or no framebuf
                self.log("display: %s, using LEDs" % (e,))
        green, red = self.hw.leds()
        return display_mod.LedDisplay(green, red)

    # ---- steps (each task calls one; tests call them with chosen times) ---------------------

    def pilot_step(self, now):
        self._last_pilot = now
        p = self.pilot_hw
        p.sample()
        self.ctl.pilot(p.pos_mv, p.neg_mv, now)

    def _pilot_idle(self):
        now = self.ticks_ms()
        if ticks_diff(now, self._last_pilot) >= PILOT_MS:
            self.pilot_step(now)

    def control_step(self, now):
        self.pilot_step(now)
        fb = self.contactor_hw.feedback()
        if fb is not None:
            self.ctl.feedback(fb, now)
        if self.button.pressed(now):
            self.ctl.stop_request("L", now)
        if ticks_diff(now, self._next_meter) >= 0:
            self._next_meter = ticks_add(now, METER_MS)
            self.ctl.meter_tick(now)
        self.heartbeat.beat(now)

    def card_step(self, now):
        """Authorization timeouts; the card reader: (re)initialised with backoff while the
        contactor is open, polled, a new card handed to the authorization flow."""
        self.flow.poll(now)
        if not self._reader_fitted:
            return
        if not self.reader_up:
            if self.ctl.closed:
                return  # init blocks ~0.1 s: never while energy flows
            if self._reader_next is not None and ticks_diff(now, self._reader_next) < 0:
                return
            self._reader_next = ticks_add(now, self.reader_backoff.delay())  # before: any error waits
            if self.reader is None:
                self.reader = self.hw.card_reader()
                if self.reader is None:
                    self._reader_fitted = False
                    self.log("no card reader in board.json: phone starts only")
                    return
            try:
                self.reader.init()
            except rc522.RC522Error as e:
                self.log("card reader: %s" % (e,))
                return
            self.reader_up = True
            self.reader_backoff.reset()
            self.log("card reader: RC522 version 0x%02X" % self.reader.version)
        reader = self.reader
        if reader is None:
            return
        try:
            uid = reader.poll()
        except rc522.RC522Error as e:
            self.reader_up = False  # initialised again (the chip may have browned out)
            self.log("card reader: %s" % (e,))
            return
        if uid is not None:
            self.flow.card(uid, now)

    def remote_stop(self, session_id):
        self.ctl.stop_request("R", self.ticks_ms(), session_id)

    def display_step(self, now):
        c = self.ctl
        self.display.show(c.display_state(), c.energy_wh(), c.cost_fen(), c.remaining_fen(), c.error)
