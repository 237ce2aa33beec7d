# The charger application on the ESP32, frozen into the image (firmware/manifest.py) so its
# bytecode stays in flash; the device's main.py only calls run().
#
# Files on the device's flash (see hardware/README.md for how a technician puts them there):
#   /board.json    pin map (hardware/board/esp32_devkitc.json)
#   /config.json   {"charger_id", "meter_serial", "meter": "/meter.json", "wifi": {"ssid",
#                  "password"}, "mqtt": {"host", "port", "username", "password",
#                  "keepalive_s", "tls", "ca"},
#                  "ntp_host", "max_current_ma", "ventilation", "tariff"}
#   /ca.der        with "mqtt": {"tls": true}: the bureau network's CA certificate (DER, or PEM
#                  in /ca.pem with "ca": "ca.pem"), the only one the broker's may be signed by;
#                  the port then defaults to 8883 and the broker's certificate must name
#                  mqtt.host (docs/broker.md)
#   /meter.json    the meter's register map (hardware/meters/*.json)
#   /data/         the charger's own files: key, sequence counter, session, outbox, tariff;
#                  bureau.json (the bureau's chain id and validator keys, written at provisioning
#                  by authz.provision from GET /v1/genesis), the offline list under authz/
#
# asyncio tasks (MicroPython asyncio: get_event_loop / create_task / run_forever); the control,
# card and display steps and what they drive are chargepoint.ChargePoint's, shared with the host
# simulator:
#   control    every PILOT_MS: pilot sample, contactor feedback, stop button; every second the
#              meter and the session (Charger.tick); beats the heartbeat. Everything else
#              yields to it: nothing below blocks while the contactor is closed.
#   watchdog   feeds the hardware WDT only while the control loop's heartbeat is fresh
#   link       supervisor.Link: Wi-Fi, the broker's address and the broker session as one path
#              with one backoff (reset only once the broker session is up) and one "ensure up"
#              step; a name is resolved (blocking) only while the contactor is open; a half-open
#              connection ends by the MQTT keepalive (config mqtt.keepalive_s) and is walked up
#              again. Then uplink.Uplink over mqtt_client.MQTTClient (which never reconnects by
#              itself here): receipts and acks, retained status, last will, enrollment of the
#              public key, remote stop
#   ntp        sets the RTC from NTP while on the network (only while the contactor is open: a
#              blocking UDP query); the clock counts as synced for a day after a sync
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

import board as board_mod
import chargepoint
import clock
import supervisor
import uplink as uplink_mod
from chargepoint import CARD_MS, DISPLAY_MS, HEARTBEAT_STALE_MS, PILOT_MS  # noqa: F401 (tests read them here)
from clock import ticks_add, ticks_diff
from flash import Flash
from mqtt_client import MQTTClient
from mqtt_codec import DEFAULT_MAX_PACKET
from mqtt_session import CONNECTED as MQTT_CONNECTED, CONNECTING as MQTT_CONNECTING

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

FIRMWARE_VERSION = "fw-1.1.0"
WATCHDOG_MS = const(1000)  # feed period (the WDT itself times out after board.json's timeout)
LINK_MS = const(50)  # the connectivity supervisor and the uplink
WIFI_CONNECT_MS = const(15000)  # one association attempt may take this long
LINK_MIN_MS = const(1000)  # backoff of the whole path (Wi-Fi, DNS, broker) after a failure
LINK_MAX_MS = const(120000)
NTP_MS = const(1000)
NTP_EVERY_MS = const(3600000)
GC_EVERY_MS = const(10000)
RX_CHUNK = const(256)  # the MQTT client's receive buffer (a packet larger is assembled in its own buffer)

try:
    from asyncio import sleep_ms as _sleep_ms
except ImportError:  # CPython (tests)
    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


def _ip_of(sockaddr):
    """The address of getaddrinfo's sockaddr: ("ip", port) on the ESP32, a raw sockaddr_in
    (family, port, four address bytes) on the unix port."""
    if isinstance(sockaddr, tuple):
        return sockaddr[0]
    return "%d.%d.%d.%d" % (sockaddr[4], sockaddr[5], sockaddr[6], sockaddr[7])


def _broker_tls():
    """broker_tls, imported only when the config asks for TLS (or is wrong about it): a charger
    on plain MQTT keeps its functions off the heap."""
    import broker_tls
    return broker_tls


def broker_context(mqtt_cfg, broker_ca):
    """The TLS client context for config's "mqtt" section, or None for plain MQTT. A CA named
    without "tls": true, or TLS without a CA, is refused: never a silent fall back to plain."""
    tls_on = mqtt_cfg.get("tls", False)
    if tls_on is not True and tls_on is not False:
        raise _broker_tls().TLSConfigError("bad_config", "mqtt.tls must be true or false, not %r" % (tls_on,))
    if not tls_on:
        if "ca" in mqtt_cfg or broker_ca is not None:
            raise _broker_tls().TLSConfigError("bad_config", "a CA is given but mqtt.tls is not true")
        return None
    if broker_ca is None:
        raise _broker_tls().TLSConfigError("no_ca", "mqtt.tls is true but no CA certificate was provisioned")
    return _broker_tls().make_context(broker_ca)


class App(chargepoint.ChargePoint):
    """The charge point of chargepoint.py with the device's connectivity around it."""

    def __init__(self, cfg, regmap, hw, flash_root="/data", ticks_ms=None, rand8=None, signer=None,
                 urandom=None, socket_mod=None, broker_ca=None):
        """`broker_ca`: the pinned CA certificate (DER) when config's mqtt.tls is true."""
        ticks_ms = ticks_ms or clock.ticks_source()
        now = ticks_ms()
        self._uptime_ms = 0
        self._uptime_at = now
        if signer is None:
            import ed25519 as signer
        self._socket = socket_mod

        # The broker client first: its packet and receive buffers (the largest long-lived
        # allocations) are taken from a heap the boot's churn (the key's expansion, the flash's
        # files) has not yet cut into small holes; the config files' parsing garbage goes first.
        # One step reads at most about one packet, so the retained burst after a (re)connection
        # (list manifest, pages, tariff) is handled a message at a time, not held all at once.
        gc.collect()
        m = cfg["mqtt"]
        cid = cfg["charger_id"]
        tls_context = broker_context(m, broker_ca)
        self.mqtt = MQTTClient(m["host"], m.get("port", 8883 if tls_context else 1883), client_id="charger-" + cid,
                               keepalive=m.get("keepalive_s", 60), clean_session=False,
                               username=m.get("username"), password=m.get("password"),
                               will=uplink_mod.will(cid, FIRMWARE_VERSION), max_inflight=24,
                               net=socket_mod, auto_reconnect=False, tls=tls_context,
                               read_budget=DEFAULT_MAX_PACKET, rx_chunk=RX_CHUNK)

        # clock: the port's epoch converted to Unix time here, once
        clk = clock.Clock(time.time, clock.epoch_offset(time.gmtime(0)[0]), mono_s_fn=self.uptime_s)
        chargepoint.ChargePoint.__init__(self, cfg, regmap, hw, Flash(flash_root), clk, ticks_ms, signer,
                                         urandom or os.urandom, FIRMWARE_VERSION, rand8)
        self.wdt = None

        # network: one supervisor for Wi-Fi, the broker's address and the broker session
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        self.link = supervisor.Link(m["host"], supervisor.Backoff(LINK_MIN_MS, LINK_MAX_MS, rand8),
                                    join_ms=WIFI_CONNECT_MS)
        ntp_host = cfg.get("ntp_host")
        if ntp_host:
            ntptime.host = ntp_host
        self.ntp_backoff = supervisor.Backoff(5000, NTP_EVERY_MS, rand8)
        self._ntp_next = None
        self._logged_reason = None
        self.attach(self.mqtt)
        self._gc_at = now

    @classmethod
    def from_files(cls, root="/", socket_mod=None):
        cfg = board_mod.load(root + "config.json")
        regmap = board_mod.load(root + cfg.get("meter", "meter.json").lstrip("/"))
        hw = board_mod.Board.from_file(root + "board.json")
        m = cfg.get("mqtt") or {}
        ca = _broker_tls().load_ca(root + m.get("ca", "ca.der").lstrip("/")) if m.get("tls") is True else None
        return cls(cfg, regmap, hw, flash_root=root + "data", socket_mod=socket_mod, broker_ca=ca)

    def uptime_s(self):
        return self._uptime_ms // 1000

    # ---- steps (each task calls one; tests call them with chosen times) ---------------------

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
            mem_free = getattr(gc, "mem_free", None)  # MicroPython's
            if mem_free is not None:
                self.log("heap free %d" % mem_free())
        if self.heartbeat.alive(now):
            if self.wdt is not None:
                self.wdt.feed()
            return True
        return False

    def link_step(self, now):
        """The connectivity supervisor's one step (supervisor.Link decides, this does the I/O),
        then the uplink over the broker session."""
        link = self.link
        mqtt = self.mqtt
        state = mqtt.state
        action = link.step(now, self.wlan.isconnected(), state == MQTT_CONNECTING, state == MQTT_CONNECTED,
                           may_block=not self.ctl.closed)
        if action == supervisor.JOIN:
            self._join()
        elif action == supervisor.RESOLVE:
            self._resolve(now)
        elif action == supervisor.CONNECT:
            mqtt.host = link.ip
            mqtt.connect(now)
        elif action == supervisor.DROP:
            mqtt.abort(link.reason or "wifi_down", now)
        for ev in link.take_events():
            if ev[0] == "up":
                self.log("link: up (broker %s:%d%s)" % (link.ip, mqtt.port, " TLS" if mqtt.tls else ""))
            else:
                self.log("link: down (%s)" % ev[1])
        reason = self.uplink.last_reason
        if reason != self._logged_reason and reason is not None:
            self._logged_reason = reason
            if reason.startswith("tls_") and mqtt.last_detail:  # Mbed TLS's words, e.g. which check failed
                self.log("mqtt: %s (%s)" % (reason, mqtt.last_detail))
            else:
                self.log("mqtt: %s" % reason)
        self.uplink.step(now)

    def _join(self):
        w = self.wlan
        wifi = self.cfg["wifi"]
        try:
            w.disconnect()
        except OSError:
            pass
        try:
            w.connect(wifi["ssid"], wifi.get("password", ""))
        except OSError as e:
            self.log("wifi connect: %s" % (e,))  # the join times out and is retried with backoff

    def _resolve(self, now):
        """The broker's address (blocking: the Link asks only while the contactor is open)."""
        sock = self._socket
        if sock is None:
            import socket as sock
        try:
            info = sock.getaddrinfo(self.link.host, self.mqtt.port, 0, sock.SOCK_STREAM)[0]
        except OSError as e:
            self.link.resolve_failed(e.args[0] if e.args else e, now)
            self.log("dns %s: %s" % (self.link.host, e))
            return
        self.link.resolved(_ip_of(info[-1]))

    def ntp_step(self, now):
        if not self.link.on_network or self.ctl.closed:
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
        loop.create_task(self.every("link", LINK_MS, self.link_step))
        loop.create_task(self.every("ntp", NTP_MS, self.ntp_step))
        loop.create_task(self.every("display", DISPLAY_MS, self.display_step))
        loop.create_task(self.every("card", CARD_MS, self.card_step))
        return loop


def run(root="", socket_mod=None):
    """Boot: the application from the files on flash, its tasks on the default event loop.
    Paths are relative to the current directory: the flash's root when the ESP32 runs main.py,
    the flash's directory when the unix port does (the device tests)."""
    app = App.from_files(root, socket_mod=socket_mod)
    gc.collect()  # the boot's garbage goes before the first session's churn
    mem_free = getattr(gc, "mem_free", None)
    if mem_free is not None:  # MicroPython
        app.log("boot: heap free %d" % mem_free())
    app.start().run_forever()


def print_public_key(root=""):
    """Print `public_key <64 hex digits>`: the charger's key, read over the serial cable by the
    technician's tool (scripts/flash.py: mpremote exec) to enroll it. Made here if the charger
    has not booted yet; the application's first boot then finds and keeps it."""
    import binascii

    import charger
    import ed25519

    seed = charger.device_seed(Flash(root + "data"), os.urandom)
    print("public_key " + binascii.hexlify(ed25519.public_key(seed)).decode())
