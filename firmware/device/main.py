# The charger application on the ESP32: MicroPython runs this file after boot.
#
# Files on the device's flash (see hardware/README.md for how a technician puts them there):
#   /board.json    pin map (hardware/board/esp32_devkitc.json)
#   /config.json   {"charger_id", "meter_serial", "meter": "/meter.json", "wifi": {"ssid",
#                  "password"}, "mqtt": {"host", "port", "username", "password"},
#                  "ntp_host", "max_current_ma", "ventilation", "tariff"}
#   /meter.json    the meter's register map (hardware/meters/*.json)
#   /data/         the charger's own files: key, sequence counter, session, outbox, tariff;
#                  bureau.json (the bureau's chain id and validator keys, written at provisioning
#                  by authz.provision from GET /v1/genesis), the offline list under authz/
#
# asyncio tasks (MicroPython asyncio: get_event_loop / create_task / run_forever):
#   control    every PILOT_MS: pilot sample, contactor feedback, stop button; every second the
#              meter and the session (Charger.tick); beats the heartbeat. Everything else
#              yields to it: nothing below blocks while the contactor is closed.
#   watchdog   feeds the hardware WDT only while the control loop's heartbeat is fresh
#   wifi       connect and reconnect with exponential backoff
#   ntp        sets the RTC from NTP (only while the contactor is open: a blocking UDP query);
#              the clock counts as synced for a day after a sync
#   mqtt       uplink.Uplink over mqtt_client.MQTTClient: receipts and acks, retained status,
#              last will, enrollment of the public key, remote stop
#   card       the RC522 card reader (polled every CARD_MS; (re)initialised only while the
#              contactor is open) and authflow.AuthFlow: online authorization over MQTT, the
#              signed offline list on timeout or without a connection, phone starts, the signed
#              offline list and tariff push (docs/authorization.md)
#   display    the OLED (or the LEDs)
import gc
import json
import os
import sys
import time

try:
    import asyncio
except ImportError:  # MicroPython before 1.21
    import uasyncio as asyncio  # type: ignore

import network
import ntptime

import authflow
import authz as authz_mod
import board as board_mod
import charger as charger_mod
import clock
import controller as controller_mod
import display as display_mod
import meter as meter_mod
import pilot as pilot_mod
import status
import supervisor
import uplink as uplink_mod
from clock import ticks_add, ticks_diff
from flash import Flash
from mqtt_client import MQTTClient
import rc522

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

FIRMWARE_VERSION = "fw-1.1.0"
PILOT_MS = const(25)  # pilot sample period: with a debounce of 3, a change acts within 100 ms
METER_MS = const(1000)
WATCHDOG_MS = const(1000)  # feed period (the WDT itself times out after board.json's timeout)
HEARTBEAT_STALE_MS = const(3000)  # control loop silent this long: stop feeding, let it reset
WIFI_MS = const(500)
WIFI_CONNECT_MS = const(15000)  # one association attempt may take this long
NTP_MS = const(1000)
NTP_EVERY_MS = const(3600000)
MQTT_MS = const(50)
DISPLAY_MS = const(500)
CARD_MS = const(150)  # card reader poll (an empty field costs the RC522's 5 ms timer)
GC_EVERY_MS = const(10000)

try:
    from asyncio import sleep_ms as _sleep_ms
except ImportError:  # CPython (tests)
    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


def _is_ip(host):
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


class App:
    def __init__(self, cfg, regmap, hw, flash_root="/data", ticks_ms=None, rand8=None, signer=None,
                 urandom=None, socket_mod=None):
        self.cfg = cfg
        self.hw = hw
        self.ticks_ms = ticks_ms or clock.ticks_source()
        self.logs = []
        now = self.ticks_ms()
        self._uptime_ms = 0
        self._uptime_at = now
        if signer is None:
            import ed25519 as signer
        self._socket = socket_mod

        # clock: the port's epoch converted to Unix time here, once
        self.clock = clock.Clock(time.time, clock.epoch_offset(time.gmtime(0)[0]), mono_s_fn=self.uptime_s)

        # meter on RS-485; the transport samples the pilot while it waits for a reply
        serial = cfg.get("meter_serial")
        if not serial:
            raise ValueError("config.json must name the meter's serial number (meter_serial)")
        self.transport = hw.rs485(regmap.get("serial", {}))
        driver = meter_mod.meter_from_config(self.transport, regmap)
        identify = None
        if regmap.get("protocol") == "dlt645_2007":
            def identify():
                return driver.meter_address
        self.watch = meter_mod.MeterWatch(lost_after=charger_mod.LOST_AFTER,
                                          frozen_after_ms=cfg.get("frozen_after_ms", 300000))
        self.meter = controller_mod.WatchedMeter(driver, self.watch, identify)

        # the charger core on flash
        self.flash = Flash(flash_root)
        self.charger = charger_mod.Charger(cfg["charger_id"], self.flash, self.meter, self.clock, signer,
                                           urandom or os.urandom, FIRMWARE_VERSION, serial,
                                           default_tariff=cfg.get("tariff"))
        self.charger.boot()

        # pilot, contactor and the controller
        self.pilot_hw = hw.pilot()
        self.contactor_hw = hw.contactor()
        self.outputs = board_mod.Outputs(self.pilot_hw, self.contactor_hw)
        monitor = pilot_mod.PilotMonitor(debounce=cfg.get("pilot_debounce", 3),
                                         calibration=self.pilot_hw.calibration())
        self.ctl = controller_mod.Controller(self.charger, monitor, self.watch, self.meter, self.outputs,
                                             current_ma=cfg.get("max_current_ma", 16000),
                                             ventilation=cfg.get("ventilation", False))
        self.button = hw.stop_button()
        self.transport.idle = self._pilot_idle
        self._last_pilot = now
        self._next_meter = ticks_add(now, METER_MS)
        self.heartbeat = supervisor.Heartbeat(HEARTBEAT_STALE_MS)
        self.wdt = None

        # the screen, or the LEDs when there is none (or it does not answer)
        self.display = self._make_display()

        # network
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        self.wifi_up = False
        self.wifi_attempts = 0
        self._wifi_attempt = None
        self._wifi_next = None
        self.wifi_backoff = supervisor.Backoff(1000, 300000, rand8)
        ntp_host = cfg.get("ntp_host")
        if ntp_host:
            ntptime.host = ntp_host
        self.ntp_backoff = supervisor.Backoff(5000, NTP_EVERY_MS, rand8)
        self._ntp_next = None
        m = cfg["mqtt"]
        cid = cfg["charger_id"]
        self.mqtt_host = m["host"]
        self.mqtt = MQTTClient(m["host"], m.get("port", 1883), client_id="charger-" + cid, keepalive=60,
                               clean_session=False, username=m.get("username"), password=m.get("password"),
                               will=uplink_mod.will(cid, FIRMWARE_VERSION), max_inflight=24,
                               reconnect_min_ms=2000, reconnect_max_ms=120000, net=socket_mod)
        self.mqtt_armed = False
        self._dns_next = None
        self.dns_backoff = supervisor.Backoff(2000, 120000, rand8)
        prov = status.Provisioning(self.flash, cid, self.charger.public_key(), serial, FIRMWARE_VERSION)

        # driver authorization: card reader, bureau requests, the signed offline list and tariff
        import ed25519
        self.authz = authz_mod.Authz(cid, self.flash, ed25519.verify, urandom or os.urandom)
        self.authz.load()
        if not self.authz.provisioned:
            self.log("authz: no bureau.json: offline list and tariff push cannot be verified")
        self.charger.authz = self.authz
        self.flow = authflow.AuthFlow(self.authz, self.charger, self.ctl, self.mqtt, self.ticks_ms, self.log)
        self.reader: "rc522.RC522 | None" = None
        self.reader_up = False
        self._reader_fitted = True
        self._reader_next = None
        self.reader_backoff = supervisor.Backoff(1000, 60000, rand8)
        self.uplink = uplink_mod.Uplink(self.flow.client, self.charger, self.ctl, prov, self.clock,
                                        FIRMWARE_VERSION, on_stop=self._remote_stop)
        self._gc_at = now

    @classmethod
    def from_files(cls, root="/"):
        cfg = board_mod.load(root + "config.json")
        regmap = board_mod.load(root + cfg.get("meter", "meter.json").lstrip("/"))
        hw = board_mod.Board.from_file(root + "board.json")
        return cls(cfg, regmap, hw, flash_root=root + "data")

    def log(self, msg):
        self.logs.append(msg)
        if len(self.logs) > 32:
            self.logs.pop(0)
        print(msg)

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

    def uptime_s(self):
        return self._uptime_ms // 1000

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

    def fail(self, exc):
        """The control loop raised: make the hardware safe and let the watchdog reset us; at
        boot an interrupted session is closed (reason P) and its receipt issued."""
        self.outputs.safe()
        self.heartbeat.stop()
        self.log("control loop failed: %r" % (exc,))
        print_exception = getattr(sys, "print_exception", None)
        if print_exception is not None:
            print_exception(exc)

    def watchdog_step(self, now):
        """Feed the WDT if the control loop is alive; keep the uptime; collect garbage."""
        self._uptime_ms += ticks_diff(now, self._uptime_at)
        self._uptime_at = now
        if ticks_diff(now, self._gc_at) >= GC_EVERY_MS:
            self._gc_at = now
            gc.collect()
        if self.heartbeat.alive(now):
            if self.wdt is not None:
                self.wdt.feed()
            return True
        return False

    def wifi_step(self, now):
        w = self.wlan
        if w.isconnected():
            if not self.wifi_up:
                self.wifi_up = True
                self.wifi_backoff.reset()
                self._wifi_attempt = None
                self.log("wifi up")
            return
        if self.wifi_up:
            self.wifi_up = False
            self.mqtt_armed = self.mqtt_armed and _is_ip(self.mqtt_host)
            self.mqtt.abort("wifi_down", now)
            self._wifi_next = None  # try again at once
            self.log("wifi down")
        if self._wifi_attempt is not None:
            if ticks_diff(now, self._wifi_attempt) < WIFI_CONNECT_MS:
                return  # association running
            self._wifi_attempt = None
            self._wifi_next = ticks_add(now, self.wifi_backoff.delay())
            self.log("wifi failed (status %s)" % (w.status(),))
            return
        if self._wifi_next is not None and ticks_diff(now, self._wifi_next) < 0:
            return
        wifi = self.cfg["wifi"]
        try:
            w.disconnect()
        except OSError:
            pass
        try:
            w.connect(wifi["ssid"], wifi.get("password", ""))
        except OSError as e:
            self.log("wifi connect: %s" % (e,))
            self._wifi_next = ticks_add(now, self.wifi_backoff.delay())
            return
        self._wifi_attempt = now
        self.wifi_attempts += 1

    def ntp_step(self, now):
        if not self.wifi_up or self.ctl.closed:
            return False  # ntptime blocks up to a second: never while energy flows
        if self._ntp_next is not None and ticks_diff(now, self._ntp_next) < 0:
            return False
        try:
            ntptime.settime()
        except (OSError, OverflowError) as e:
            self._ntp_next = ticks_add(now, self.ntp_backoff.delay())
            self.log("ntp: %s" % (e,))
            return False
        self.clock.mark_synced()
        self.ntp_backoff.reset()
        self._ntp_next = ticks_add(now, NTP_EVERY_MS)
        return True

    def mqtt_step(self, now):
        if not self.wifi_up:
            return
        if not self.mqtt_armed:
            if not self._resolve(now):
                return
            self.mqtt.connect(now)
            self.mqtt_armed = True
        self.uplink.step(now)

    def _resolve(self, now):
        """The broker's address. A name is looked up (blocking) only while the contactor is
        open; an IP address needs no lookup."""
        if _is_ip(self.mqtt_host):
            self.mqtt.host = self.mqtt_host
            return True
        if self.ctl.closed:
            return False
        if self._dns_next is not None and ticks_diff(now, self._dns_next) < 0:
            return False
        sock = self._socket
        if sock is None:
            import socket as sock
        try:
            info = sock.getaddrinfo(self.mqtt_host, self.mqtt.port, 0, sock.SOCK_STREAM)[0]
        except OSError as e:
            self._dns_next = ticks_add(now, self.dns_backoff.delay())
            self.log("dns %s: %s" % (self.mqtt_host, e))
            return False
        self.dns_backoff.reset()
        self.mqtt.host = info[-1][0]
        return True

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

    def _remote_stop(self, session_id):
        self.ctl.stop_request("R", self.ticks_ms(), session_id)

    def display_step(self, now):
        c = self.ctl
        self.display.show(c.display_state(), c.energy_wh(), c.cost_fen(), c.remaining_fen(), c.error)

    # ---- tasks ------------------------------------------------------------------------------

    async def control_task(self):
        while True:
            try:
                self.control_step(self.ticks_ms())
            except Exception as e:  # noqa: BLE001 - anything: make safe, stop feeding the WDT
                self.fail(e)
                return
            await _sleep_ms(PILOT_MS)

    async def every(self, name, period_ms, step):
        while True:
            try:
                step(self.ticks_ms())
            except Exception as e:  # noqa: BLE001 - a network or display error must not stop the app
                self.log("%s: %r" % (name, e))
            await _sleep_ms(period_ms)

    def start(self, loop=None):
        """Start the watchdog and the tasks on `loop` (the default event loop); return it."""
        self.wdt = self.hw.watchdog()
        if loop is None:
            loop = asyncio.get_event_loop()
        loop.create_task(self.control_task())
        loop.create_task(self.every("watchdog", WATCHDOG_MS, self.watchdog_step))
        loop.create_task(self.every("wifi", WIFI_MS, self.wifi_step))
        loop.create_task(self.every("ntp", NTP_MS, self.ntp_step))
        loop.create_task(self.every("mqtt", MQTT_MS, self.mqtt_step))
        loop.create_task(self.every("display", DISPLAY_MS, self.display_step))
        loop.create_task(self.every("card", CARD_MS, self.card_step))
        return loop


def main():
    app = App.from_files("/")
    loop = app.start()
    loop.run_forever()


if __name__ == "__main__":
    main()
