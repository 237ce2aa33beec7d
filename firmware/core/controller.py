# The charge point's state machine (IEC 61851-1 mode 3 / SAE J1772; GB/T 18487.1 AC is the
# same scheme). Pure logic for MicroPython and CPython alike: no `machine`, no clock, no socket.
#
# Inputs (method calls; `now_ms` is a millisecond tick counter, differences via ticks_diff):
#   pilot(pos_adc_mv, neg_adc_mv, now_ms)   one sample of the control pilot's plateaus, every
#                                            few tens of ms; classified and debounced by the
#                                            injected pilot.PilotMonitor. Allocation-free while
#                                            nothing changes.
#   feedback(closed, now_ms)                 the contactor's auxiliary contact (optional)
#   meter_tick(now_ms)                       about once a second: the session's meter reading
#                                            (Charger.tick), or an idle reading, and timeouts
#   authorizing(now_ms)                      a card or phone request is out, answer awaited
#   authorize(method, id_token, wallet_id, authorized_fen, auth_ref, now_ms)   granted
#   deny(reason, now_ms)                     refused
#   stop_request(reason, now_ms, session_id=None)   "L" local (button) or "R" remote
#   set_current(ma)                          the current to offer (cable / supply / load limit)
#
# Outputs go to the injected `outputs` object at once, in this order of precedence:
#   outputs.contactor(closed)   the contactor's relay
#   outputs.pilot(duty_u16)     65535 = steady +12 V (no offer), 0 = steady -12 V (state F,
#                               EVSE unavailable), otherwise the 1 kHz PWM with this duty
# Outputs are calls rather than a returned list because order matters for safety: the
# contactor is open before the session is stopped, i.e. before a receipt is signed and written
# to flash (seconds of work on an ESP32). Sessions are started and stopped on the injected
# charger.Charger; the display and status follow `state`, `error` and `version`, which
# changes whenever something they show changed.
#
# Rules (BRIEF §4, IEC 61851-1):
# - The contactor closes only in C or D, with a running (authorized) session, with PWM on.
# - It opens at once on any pilot fault (E short, F read while not driven, a voltage between
#   bands, a missing vehicle diode), on unplug (A), on C -> B (the vehicle paused), on a stop
#   request, on the prepaid limit (Charger.tick says Q), on a lost meter, on contactor faults.
# - Stop reasons in the receipt: U unplug, F fault (pilot, meter, contactor), L local, R
#   remote, Q limit. Every session that started ends in a receipt, with the end reading taken
#   from the meter unless the meter is what failed.
# - A session can be authorized before plug-in (it then waits `plug_timeout_ms` for the
#   vehicle) or after. The session itself (Charger.start, the begin reading) starts when the
#   vehicle first asks for energy (B -> C with PWM on), so its begin reading is taken just
#   before the contactor closes.
# - A pilot fault leaves the charge point FAULTED until the vehicle is unplugged (A).
# - Without a meter or a tariff the charge point is UNAVAILABLE and drives state F (-12 V)
#   until both are back.
# - Every meter read goes through a WatchedMeter to the MeterWatch, which alone judges the
#   readings (rollback, frozen while current flowed, lost, replaced); the Charger copies its bits
#   into the session (receipt field 16). Here only the watch's inputs are set (flow, clock).
#
# Re-entrancy: on the device the meter transport samples the pilot while it waits for the
# meter's reply, so `pilot()` may be called while a Charger call is running. Then it only
# acts on the outputs (opens the contactor when the new state forbids energy) and the state
# machine takes the new pilot state up as soon as the Charger call returned.

import receipt
from charger import ChargerError
from meter_watch import MeterError, WatchedMeter
from pilot import (
    DIODE_FAULT, FULL_SCALE_U16, INVALID, STATE_A, STATE_B, STATE_C, STATE_D, STATE_E, STATE_F,
    duty_u16,
)
from ticks import ticks_add, ticks_diff

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# Charge point states (named after OCPP 1.6's connector status).
AVAILABLE = "available"
PREPARING = "preparing"  # plugged in without authorization, or authorized, session not started
CHARGING = "charging"
SUSPENDED_EV = "suspended_ev"  # session running, the vehicle does not ask for energy (B)
FINISHING = "finishing"  # session ended by stop or limit, vehicle still plugged in
FAULTED = "faulted"
UNAVAILABLE = "unavailable"

PILOT_HIGH = const(65535)  # steady +12 V: no current offered
PILOT_LOW = const(0)  # steady -12 V: state F, EVSE unavailable

# errors (short machine reasons, shown on the display and in the status message)
ERR_PILOT_SHORT = "pilot_short"  # E: CP shorted to PE
ERR_PILOT_INVALID = "pilot_invalid"  # between the bands
ERR_DIODE = "diode_fault"  # negative plateau not near -12 V while PWM runs
ERR_PILOT_LOW = "pilot_low"  # reads -12 V (F) while the EVSE drives +12 V
ERR_METER_LOST = "meter_lost"
ERR_NO_TARIFF = "no_tariff"
ERR_WELDED = "contactor_welded"
ERR_CONTACTOR = "contactor_failed"
ERR_VENTILATION = "ventilation_unsupported"
ERR_PLUG_TIMEOUT = "plug_timeout"
ERR_AUTH_TIMEOUT = "auth_timeout"

_PILOT_ERRORS = {STATE_E: ERR_PILOT_SHORT, INVALID: ERR_PILOT_INVALID, DIODE_FAULT: ERR_DIODE,
                 STATE_F: ERR_PILOT_LOW}


def _asks(p):
    return p == STATE_C or p == STATE_D


def _plugged(p):
    return p == STATE_B or p == STATE_C or p == STATE_D


class Controller:
    def __init__(self, charger, monitor, watch, meter, outputs, current_ma: int = 16000,
                 plug_timeout_ms: int = 90000, auth_timeout_ms: int = 20000, retry_ms: int = 1000,
                 feedback_ms: int = 1000, ventilation: bool = True):
        self.charger = charger
        self.monitor = monitor
        self.watch = watch
        self.meter = meter
        self.outputs = outputs
        duty_u16(current_ma)  # refuses a current outside 6..80 A now, not at the first offer
        self.current_ma = current_ma
        self.plug_timeout_ms = plug_timeout_ms
        self.auth_timeout_ms = auth_timeout_ms
        self.retry_ms = retry_ms
        self.feedback_ms = feedback_ms
        self.ventilation = ventilation
        self.state = AVAILABLE
        self.error: "str | None" = None
        self.vehicle: "str | None" = None  # debounced pilot state the state machine last acted on
        self.auth: "tuple | None" = None  # (method, id_token, wallet_id, authorized_fen, auth_ref)
        self.version = 0  # changes whenever something the display or status shows changed
        self.last: "tuple | None" = None  # (energy_wh, amount_fen, stop_reason) of the last session
        self.sessions = 0  # sessions ended since boot
        self.welded = False
        self._plug_deadline: "int | None" = None  # authorized, waiting for the vehicle until then
        self._authorizing: "int | None" = None  # ms when the pending authorization request went out
        self._retry_at: "int | None" = None  # a failed session start is retried from then on
        self._fb_since: "int | None" = None  # contactor feedback disagrees since then
        self._wbase = 0  # ms of the session start: the MeterWatch clock's zero
        self._busy = False
        self._deferred = False
        self.closed = True  # unknown at boot: force both outputs below
        self.duty = -1
        self.pwm_on = False
        self._open()
        self._pilot_out(PILOT_HIGH)

    # ---- inputs ------------------------------------------------------------------------

    def pilot(self, pos_mv: int, neg_mv, now_ms: int) -> None:
        """One pilot sample (ADC mV of the positive and the negative plateau)."""
        if self.state == UNAVAILABLE:
            return  # the EVSE drives -12 V: the line tells nothing about the vehicle
        p = self.monitor.sample(pos_mv, neg_mv, self.pwm_on)
        if p is None:
            return
        if self._busy:
            if not _asks(p):
                self._open()  # the outputs act now; the state machine when the call returned
            self._deferred = True
            return
        self._on_pilot(p, now_ms)
        self._settle(now_ms)

    def feedback(self, closed: bool, now_ms: int) -> None:
        """The contactor's auxiliary contact: True when it reports the main contacts closed."""
        if closed == self.closed:
            self._fb_since = None
            if self.welded and not closed:
                self.welded = False  # released; availability is re-checked at the next tick
            return
        if self.welded:
            return  # known, and the charge point is unavailable for it
        if self._fb_since is None:
            self._fb_since = now_ms
            return
        if ticks_diff(now_ms, self._fb_since) < self.feedback_ms:
            return
        self._fb_since = None
        if closed:
            # commanded open, still closed: welded contacts; the vehicle must not be offered
            # energy (F) until the contactor is seen open again
            self.welded = True
            self._unavailable(ERR_WELDED, now_ms, True)
        else:
            self._fault(ERR_CONTACTOR, now_ms)
        self._settle(now_ms)

    def meter_tick(self, now_ms: int) -> None:
        """About once a second: meter reading and accounting, limit, lost meter, timeouts."""
        self._timeouts(now_ms)
        m = self.meter
        m.now_ms = ticks_diff(now_ms, self._wbase)
        m.flowing = self.closed and _asks(self.vehicle)
        s = self.charger.session
        if s is not None:
            wh = s.energy_wh
            self._busy = True
            try:
                reason = self.charger.tick(False)  # F on a meter the watch calls lost
            finally:
                self._busy = False
            if reason == receipt.STOP_LIMIT:
                self._finish(receipt.STOP_LIMIT, now_ms)
            elif reason is not None:
                self._unavailable(ERR_METER_LOST, now_ms, False)
            elif s.energy_wh != wh:
                self._changed()
        else:
            self._busy = True
            try:
                m.read_wh()  # idle: a meter that vanished is noticed before a driver arrives
            except MeterError:
                pass
            finally:
                self._busy = False
            problem = self._problem()
            if self.state == UNAVAILABLE:
                if problem is None:
                    self._available()
            elif problem is not None:
                self._unavailable(problem, now_ms, False)
        self._settle(now_ms)

    def authorizing(self, now_ms: int) -> None:
        """An authorization request went out; the display says so until the answer."""
        self._authorizing = now_ms
        self._changed()

    def authorize(self, method: int, id_token: str, wallet_id: str, authorized_fen: int, auth_ref: str,
                  now_ms: int) -> bool:
        """An authorization was granted. False when the charge point cannot take it now
        (a session is running, faulted, unavailable); the caller tells the driver."""
        self._authorizing = None
        if self.charger.session is not None or self.state == FAULTED or self.state == UNAVAILABLE:
            self._changed()
            return False
        self.auth = (method, id_token, wallet_id, authorized_fen, auth_ref)
        self.error = None
        self._retry_at = None
        self._changed()
        if _plugged(self.vehicle):
            self._plug_deadline = None
            self._on_pilot(self.vehicle, now_ms)
            self._settle(now_ms)
        else:
            self._plug_deadline = ticks_add(now_ms, self.plug_timeout_ms)
            self._set(PREPARING)
        return True

    def deny(self, reason: str, now_ms: int) -> None:
        self._authorizing = None
        self.error = "denied:" + reason
        self._changed()

    def stop_request(self, reason: str, now_ms: int, session_id=None) -> bool:
        """Stop by the driver ("L", the button) or remotely ("R"). With `session_id`, only that
        session is stopped (a late remote stop must not end the next driver's session). An
        authorization that has not started a session yet is withdrawn. True when something
        was stopped."""
        if reason != receipt.STOP_LOCAL and reason != receipt.STOP_REMOTE:
            raise ValueError("stop reason must be L or R")
        s = self.charger.session
        if s is not None:
            if session_id is not None and session_id != s.d["session_id"]:
                return False
            self._finish(reason, now_ms)
            self._settle(now_ms)
            return True
        if session_id is None and self.auth is not None:
            self.auth = None
            self._plug_deadline = None
            self._pilot_out(PILOT_HIGH)
            self._set(PREPARING if _plugged(self.vehicle) else AVAILABLE)
            return True
        return False

    def set_current(self, current_ma: int) -> None:
        """Change the offered current; a running PWM changes its duty at once."""
        duty_u16(current_ma)  # ValueError outside 6..80 A
        self.current_ma = current_ma
        if self.pwm_on:
            self._offer()

    # ---- views for the display and the status message ------------------------------------

    def display_state(self) -> str:
        """state, with the hint a driver needs while preparing."""
        if self._authorizing is not None:
            return "authorizing"
        if self.state == PREPARING:
            if self.auth is None:
                return "tap_card"
            if not _plugged(self.vehicle):
                return "plug_in"
            return "ready"
        return self.state

    def energy_wh(self) -> int:
        s = self.charger.session
        if s is not None:
            return s.energy_wh
        return self.last[0] if self.last is not None else 0

    def cost_fen(self):
        s = self.charger.session
        if s is not None:
            return s.amount_fen(self.charger.tariff)
        return self.last[1] if self.last is not None else None

    def remaining_fen(self):
        s = self.charger.session
        if s is None:
            return None
        return s.d["auth"]["authorized_fen"] - s.amount_fen(self.charger.tariff)

    # ---- the state machine ---------------------------------------------------------------

    def _on_pilot(self, p, now):
        if p != self.vehicle:
            self.vehicle = p
            self._changed()
        if self.state == UNAVAILABLE:
            return
        if p == STATE_F or p == STATE_E or p == INVALID or p == DIODE_FAULT:
            self._fault(_PILOT_ERRORS[p], now)
            return
        if p == STATE_A:
            self._open()
            if self.charger.session is not None:
                self._end(receipt.STOP_UNPLUG, now, None)
            if self.state == FAULTED:
                self.error = None
                self._changed()
            self._pilot_out(PILOT_HIGH)
            if self.auth is not None and self._plug_deadline is not None:
                self._set(PREPARING)  # authorized first: wait for the vehicle
                return
            self.auth = None
            self._set(AVAILABLE)
            return
        if self.state == FAULTED:
            return  # cleared by unplugging only
        self._plug_deadline = None
        session = self.charger.session is not None
        if p == STATE_B or (p == STATE_D and not self.ventilation):
            self._open()
            if p == STATE_D:
                self.error = ERR_VENTILATION
                self._changed()
            if session:
                self._set(SUSPENDED_EV)
            elif self.auth is not None:
                self._offer()
                self._set(PREPARING)
            elif self.state != FINISHING:
                self._set(PREPARING)
            return
        # C or D: the vehicle asks for energy
        if session:
            if self.pwm_on:
                self._close()
                self._set(CHARGING)
            return
        if self.auth is not None:
            self._offer()
            self._set(PREPARING)
            self._start(now)
        elif self.state != FINISHING:
            self._set(PREPARING)  # C1: asks without an offer; waits for authorization

    def _start(self, now):
        a = self.auth
        if a is None or (self._retry_at is not None and ticks_diff(now, self._retry_at) < 0):
            return
        problem = self._problem()
        if problem is not None:
            self._unavailable(problem, now, False)
            return
        self._wbase = now
        self.meter.now_ms = 0
        self.meter.flowing = False
        err = None
        self._busy = True
        try:
            try:
                self.charger.start(a[0], a[1], a[2], a[3], a[4])
            except MeterError as e:
                err = "meter:" + e.reason
            except ChargerError as e:
                err = "start:" + e.reason
        finally:
            self._busy = False
        if err is not None:
            # no session, contactor open; retried while the vehicle keeps asking
            self.error = err
            self._retry_at = ticks_add(now, self.retry_ms)
            self._changed()
            self._settle(now)
            return
        self.auth = None  # the session holds it now
        self._retry_at = None
        self.error = None
        self._deferred = False
        self._changed()
        # close now if the vehicle still asks (it may have changed while the meter was read)
        p = self.monitor.state
        self._on_pilot(p if p is not None else self.vehicle, now)

    def _finish(self, reason, now):
        """Stop (L, R) or limit (Q): contactor open, no offer, session ended."""
        self._open()
        self._pilot_out(PILOT_HIGH)
        self._end(reason, now, None)
        self.auth = None
        self._set(FINISHING if _plugged(self.vehicle) else AVAILABLE)

    def _fault(self, error, now):
        self._open()
        self._pilot_out(PILOT_HIGH)  # +12 V: a vehicle unplugging is seen (A) and clears it
        self.error = error
        if self.charger.session is not None:
            self._end(receipt.STOP_FAULT, now, True)  # the meter works: take the end reading
        self.auth = None
        self._plug_deadline = None
        self._set(FAULTED)
        self._changed()

    def _unavailable(self, error, now, read_end):
        self._open()
        self._pilot_out(PILOT_LOW)
        self.error = error
        if self.charger.session is not None:
            self._end(receipt.STOP_FAULT, now, read_end)
        self.auth = None
        self._plug_deadline = None
        self._set(UNAVAILABLE)
        self._changed()

    def _available(self):
        self.error = None
        self.vehicle = None
        self.monitor.reset()  # the line changes from -12 V: classify afresh
        self._pilot_out(PILOT_HIGH)
        self._set(AVAILABLE)
        self._changed()

    def _problem(self):
        if self.welded:
            return ERR_WELDED
        if self.watch.lost:
            return ERR_METER_LOST
        if self.charger.tariff is None:
            return ERR_NO_TARIFF
        return None

    def _end(self, reason, now, read_end):
        """Stop the session on the Charger: end reading, receipt signed into the outbox. The
        contactor is already open."""
        s = self.charger.session
        self.meter.flowing = False
        self.meter.now_ms = ticks_diff(now, self._wbase)
        self._busy = True
        try:
            self.charger.stop(reason, read_end)
        finally:
            self._busy = False
        amount = None
        t = self.charger.tariff
        if t is not None and (t.tariff_id, t.version) == (s.d["tariff_id"], s.d["tariff_version"]):
            amount = s.amount_fen(t)
        self.last = (s.energy_wh, amount, reason)
        self.sessions += 1
        self._changed()

    def _settle(self, now):
        """Take up a pilot change that arrived during a Charger call."""
        while self._deferred:
            self._deferred = False
            p = self.monitor.state
            if p is not None:
                self._on_pilot(p, now)

    def _timeouts(self, now):
        if self._plug_deadline is not None and ticks_diff(now, self._plug_deadline) >= 0:
            self._plug_deadline = None
            if self.auth is not None and self.charger.session is None:
                self.auth = None
                self.error = ERR_PLUG_TIMEOUT
                self._set(PREPARING if _plugged(self.vehicle) else AVAILABLE)
                self._changed()
        if self._authorizing is not None and ticks_diff(now, self._authorizing) >= self.auth_timeout_ms:
            self._authorizing = None
            self.error = ERR_AUTH_TIMEOUT
            self._changed()

    # ---- outputs -------------------------------------------------------------------------

    def _open(self):
        if self.closed:
            self.closed = False
            self._fb_since = None
            self.meter.flowing = False
            self.outputs.contactor(False)
            self._changed()

    def _close(self):
        if not self.closed:
            self.closed = True
            self._fb_since = None
            self.outputs.contactor(True)
            self._changed()

    def _offer(self):
        self._pilot_out(duty_u16(self.current_ma))

    def _pilot_out(self, duty):
        if duty != self.duty:
            self.duty = duty
            self.pwm_on = duty != PILOT_HIGH and duty != PILOT_LOW
            self.outputs.pilot(duty)
            self._changed()

    def _set(self, state):
        if state != self.state:
            self.state = state
            self._changed()

    def _changed(self):
        self.version = (self.version + 1) & 0x3FFFFFFF


__all__ = [
    "Controller", "WatchedMeter", "AVAILABLE", "PREPARING", "CHARGING", "SUSPENDED_EV", "FINISHING",
    "FAULTED", "UNAVAILABLE", "PILOT_HIGH", "PILOT_LOW", "FULL_SCALE_U16",
]
