# The charger application core: sessions, the sequence counter, signing, the outbox, and the
# replies from the bureau. No I/O of its own: flash, meter, clock, randomness and the signer
# are handed in, so the same object runs on the ESP32 and in host simulations and tests.
#
# Power-cut safety, in the order things reach flash when a session ends:
#   1. seq file := n + 1                   (n is never handed out twice; a cut here loses n)
#   2. session.json := session + closing n (the receipt is now fully determined)
#   3. outbox/n := signed receipt          (Ed25519 is deterministic: redoing 3 gives the same bytes)
#   4. remove session.json
# At boot, a session.json without `closing` was cut off mid-charge: it is closed with stop
# reason P at the meter's reading now. One with `closing` resumes at step 3.
import json

import receipt
import signed_reply
import topics
import trust as trust_mod
from errors import CodecError
from meter_watch import CARRIED, MeterError, MeterWatch, WatchedMeter
from outbox import Outbox, RETRYABLE, receipt_id
from session import Session
from tariff import Tariff
from ticks import ticks_diff

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

SESSION_FILE = "session.json"
SEQ_FILE = "seq"
KEY_FILE = "key.seed"
TARIFF_FILE = "tariff.json"
PENDING_TARIFF_FILE = "tariff.next"  # a tariff pushed during a session, applied when it ends
CHECKPOINT_S = const(15)  # session state reaches flash at least this often while charging
RESEND_MS = const(20000)  # an unacknowledged receipt goes out again after this
WINDOW = const(16)  # receipts in flight at once
LOST_AFTER = const(3)  # consecutive failed meter reads before the watch calls the meter lost


def device_seed(flash, urandom):
    """The charger's Ed25519 seed; on first use (first boot, or the technician's key read
    before it) it is made here, and it never leaves the device."""
    seed = flash.read(KEY_FILE)
    if seed is None or len(seed) != 32:
        seed = urandom(32)
        flash.write_atomic(KEY_FILE, seed)
    return seed


class ChargerError(CodecError):
    """A request the charger cannot carry out now (a session runs, no tariff, not authorized)."""


class Charger:
    def __init__(self, charger_id, flash, meter, clock, signer, urandom, firmware_version, meter_serial,
                 default_tariff=None):
        self.charger_id = charger_id
        self.flash = flash
        # Every read goes through the meter watch, the one judge of readings (meter_watch.py):
        # the device hands in its WatchedMeter, a bare driver gets a watch of its own.
        if not isinstance(meter, WatchedMeter):
            meter = WatchedMeter(meter, MeterWatch(lost_after=LOST_AFTER))
        self.meter = meter
        self.watch = meter.watch
        self.clock = clock  # .now() -> Unix s (UTC), .synced() -> bool
        self.signer = signer  # .sign(seed, msg), .public_key(seed), .verify(key, msg, sig): the ed25519 module
        self.urandom = urandom
        self.firmware_version = firmware_version
        self.meter_serial = meter_serial
        self.default_tariff = default_tariff
        self.outbox = Outbox(flash)
        self.session = None
        self.tariff = None
        self.seed = None
        self.next_seq = 1
        self.last_checkpoint = 0
        self.sent_at = {}  # seq -> ms of the last send on this connection
        self.resend_ms = RESEND_MS
        self.events = []  # (name, detail) for the display and logs
        self.authz = None  # authz.Authz when the shell attaches one: offline spend tracking
        self.trust = trust_mod.Trust()  # the bureau keys of bureau.json, read at boot
        self.refused_acks = {}  # reason -> acks ignored for it (shown in the status)
        self.refused_rejects = {}  # reason -> rejects ignored for it (shown in the status)
        self.receipt_topic = topics.receipt(charger_id)
        self.reply_topic = topics.reply(charger_id)

    # ---- boot --------------------------------------------------------------------------

    def boot(self):
        self.trust = trust_mod.load(self.flash)
        self.seed = device_seed(self.flash, self.urandom)
        doc = self.flash.read(TARIFF_FILE)
        self.tariff = Tariff(json.loads(doc)) if doc else (Tariff(self.default_tariff) if self.default_tariff else None)
        raw = self.flash.read(SEQ_FILE)
        n = int(raw) if raw else 1
        pending = self.outbox.pending()
        if pending:
            n = max(n, pending[-1] + 1)
        self.next_seq = n
        raw = self.flash.read(SESSION_FILE)
        if raw:
            s = Session(json.loads(raw))
            if s.d["closing"] is None:
                self.session = s
                self._read_meter()
                self.events.append(("power_failure_closed", s.d["session_id"]))
                self.stop(receipt.STOP_POWER)
            else:
                self.next_seq = max(self.next_seq, s.d["closing"]["seq"] + 1)
                self._issue(s)
        if self.session is None:
            self._apply_pending_tariff()

    def public_key(self):
        return self.signer.public_key(self.seed)

    def set_tariff(self, doc):
        """A tariff pushed by the bureau (its signature is checked by the caller)."""
        t = Tariff(doc)
        self.flash.write_atomic(TARIFF_FILE, json.dumps(doc).encode())
        self.tariff = t

    def offer_tariff(self, doc, effective_from=0):
        """A verified tariff from the bureau: applied now when idle and in force by this
        charger's clock (the clock its receipts' start_time comes from), else kept and applied
        when the running session ends or its time comes (a session is billed by the tariff in
        force when it started, docs/ledger.md). Returns "applied", "pending" or "unchanged"."""
        t = Tariff(doc)
        cur = self.tariff
        if cur is not None and (cur.tariff_id, cur.version) == (t.tariff_id, t.version):
            self.flash.remove(PENDING_TARIFF_FILE)
            return "unchanged"
        if self.session is not None or self.clock.now() < effective_from:
            self.flash.write_atomic(PENDING_TARIFF_FILE,
                                    json.dumps({"doc": doc, "effective_from": effective_from}).encode())
            return "pending"
        self.set_tariff(doc)
        self.flash.remove(PENDING_TARIFF_FILE)
        return "applied"

    def on_signed_tariff(self, payload, authz):
        """A message on the tariff topic: verified by `authz` against the bureau keys this
        charger was provisioned with, then offered. None for an old or repeated push; raises
        authz.AuthzError for one that must not be used."""
        found = authz.open_tariff(payload, self.tariff)
        if found is None:
            return None
        result = self.offer_tariff(found[0], found[2])
        authz.tariff_taken(found[1])
        return result

    def _apply_pending_tariff(self):
        """The kept tariff, once no session runs and its effective time has come."""
        raw = self.flash.read(PENDING_TARIFF_FILE)
        if not raw:
            return
        kept = json.loads(raw)
        if "doc" not in kept:  # kept by a revision without effective times: in force at once
            kept = {"doc": kept, "effective_from": 0}
        if self.clock.now() >= kept["effective_from"]:
            self.set_tariff(kept["doc"])
            self.flash.remove(PENDING_TARIFF_FILE)

    # ---- sessions ----------------------------------------------------------------------

    def start(self, method, id_token, wallet_id, authorized_fen, auth_ref):
        if self.session is not None:
            raise ChargerError("busy", "a session is running")
        self._apply_pending_tariff()
        if self.tariff is None:
            raise ChargerError("no_tariff", "no tariff on flash and none by default")
        watch = self.watch
        carried = watch.status & CARRIED
        watch.start_session()
        try:
            start_wh = self.meter.read_wh()  # no session without a real begin reading
        except MeterError:
            watch.status |= carried  # still owed to the next session
            raise
        auth = {"method": method, "id_token": id_token, "wallet_id": wallet_id, "authorized_fen": authorized_fen,
                "auth_ref": auth_ref}
        now = self.clock.now()
        self.session = Session.begin(self.urandom(16), auth, self.tariff, self.meter_serial, start_wh, now,
                                     self.clock.synced())
        self.session.flag(carried | watch.status)
        self._checkpoint(now)
        return self.session

    def tick(self, stop=True):
        """Read the meter and account for the energy; stops at the prepaid limit or on a meter
        the watch calls lost. Returns the stop reason when the session ended, else None.

        With stop=False the session is left open and the reason is only returned, so that the
        caller can open the contactor before the receipt is signed and written; it must then
        call stop(reason) itself."""
        s = self.session
        if s is None:
            return None
        if not self._read_meter():
            if self.watch.lost:
                if stop:
                    self.stop(receipt.STOP_FAULT)
                return receipt.STOP_FAULT
            return None
        if s.limit_reached(self.tariff, self.clock.now()):
            if stop:
                self.stop(receipt.STOP_LIMIT)
            return receipt.STOP_LIMIT
        now = self.clock.now()
        if now - self.last_checkpoint >= CHECKPOINT_S:
            self._checkpoint(now)
        return None

    def _read_meter(self):
        """One reading into the session; False when the meter gave none. The watch's verdict
        on it (and on every read before) goes into the session's meter status."""
        try:
            wh = self.meter.read_wh()
        except MeterError:
            wh = None
        s = self.session
        s.flag(self.watch.status)
        if wh is None:
            return False
        s.sample(self.tariff, wh, self.clock.now())
        return True

    def stop(self, reason, read_end=None):
        """End the session with `reason`; returns the envelope of its receipt. The end reading
        is taken from the meter except for P and F (the meter may be what failed); read_end
        True takes it for those too (a pilot fault with a working meter), False never."""
        s = self.session
        if s is None:
            return None
        if read_end is None:
            read_end = reason != receipt.STOP_POWER and reason != receipt.STOP_FAULT
        if read_end:
            self._read_meter()  # the end reading
        s.flag(self.watch.status)
        seq = self._allocate_seq()
        s.close(seq, self.clock.now(), self.clock.synced(), reason)
        self._checkpoint(None)
        return self._issue(s)

    def _allocate_seq(self):
        n = self.next_seq
        self.flash.write_atomic(SEQ_FILE, str(n + 1).encode())
        self.next_seq = n + 1
        return n

    def _checkpoint(self, now):
        self.flash.write_atomic(SESSION_FILE, json.dumps(self.session.to_dict()).encode())
        if now is not None:
            self.last_checkpoint = now

    def _issue(self, s):
        seq = s.d["closing"]["seq"]
        tariff = self.tariff
        if tariff is None or (tariff.tariff_id, tariff.version) != (s.d["tariff_id"], s.d["tariff_version"]):
            tariff = self._tariff_of(s)
        env = receipt.seal(s.receipt(tariff, self.charger_id, self.firmware_version), self.seed, self.signer.sign)
        if not self.outbox.has(seq):
            self.outbox.put(seq, env)
        self.flash.remove(SESSION_FILE)
        self.session = None
        self.events.append(("receipt", seq))
        self._apply_pending_tariff()
        return env

    def start_authorized(self, decision):
        """Start a session on an accepted decision of authz.Authz (its basis goes into the receipt)."""
        if decision["decision"] != "accept":
            raise ChargerError("not_authorized", decision["reason"])
        return self.start(decision["method"], decision["id_token"], decision["wallet_id"],
                          decision["authorized_fen"], decision["auth_ref"])

    def _tariff_of(self, s):
        # The session keeps the tariff it started with; the stored one may have moved on.
        for doc in (self.flash.read(TARIFF_FILE), None):
            if doc:
                t = Tariff(json.loads(doc))
            elif self.default_tariff:
                t = Tariff(self.default_tariff)
            else:
                continue
            if (t.tariff_id, t.version) == (s.d["tariff_id"], s.d["tariff_version"]):
                return t
        raise ChargerError("no_tariff", "the tariff of the session is not on flash")

    # ---- delivery to the bureau --------------------------------------------------------

    def connection_up(self):
        self.sent_at = {}

    def due(self, now_ms):
        """(topic, envelope) pairs to publish now: unsent or unacknowledged for resend_ms."""
        out = []
        for seq in self.outbox.pending():
            if len(out) >= WINDOW:
                break
            t = self.sent_at.get(seq)
            if t is not None and ticks_diff(now_ms, t) < self.resend_ms:
                continue
            env = self.outbox.get(seq)
            if env is not None:
                self.sent_at[seq] = now_ms
                out.append((self.receipt_topic, env))
        return out

    def on_reply(self, payload):
        """A message on the reply topic; returns ("ack"|"reject"|"ignored", seq). An ack removes
        its receipt, and a reject moves it to refused/, only when it is signed by a bureau
        validator for this chain, this charger and the seq and receipt id in the outbox; any
        other is ignored and counted in `refused_acks` or `refused_rejects` by reason."""
        try:
            msg = json.loads(payload)
            kind, seq = msg.get("type"), msg.get("seq")
        except (ValueError, AttributeError):
            return ("ignored", None)
        if kind == "ack":
            reason = self._check_ack(msg)
            if reason is not None:
                self.refused_acks[reason] = self.refused_acks.get(reason, 0) + 1
                self.events.append(("ack_refused", (seq, reason)))
                return ("ignored", seq if isinstance(seq, int) else None)
            if self.authz is not None:
                self.authz.note_ack(self.outbox.get(seq), msg)
            self.outbox.ack(seq, msg["receipt"])
            self.sent_at.pop(seq, None)
            return ("ack", seq)
        if kind == "reject":
            if seq is None and msg.get("receipt") is None:
                return ("ignored", None)  # the bureau could not read the envelope: names nothing
            reason = self._check_reply(msg, signed_reply.REJECT_VERSION, signed_reply.reject_bytes)
            if reason is not None:
                self.refused_rejects[reason] = self.refused_rejects.get(reason, 0) + 1
                self.events.append(("reject_refused", (seq, reason)))
                return ("ignored", seq if isinstance(seq, int) else None)
            reason = msg.get("reason") or ""
            self.events.append(("rejected", (seq, reason)))
            if reason in RETRYABLE:
                return ("reject", seq)
            self.outbox.refuse(seq, reason)
            self.sent_at.pop(seq, None)
            return ("reject", seq)
        return ("ignored", seq if isinstance(seq, int) else None)

    def _check_ack(self, msg):
        return self._check_reply(msg, signed_reply.ACK_VERSION, signed_reply.ack_bytes)

    def _check_reply(self, msg, version, signed_bytes):
        # An ack or reject about one receipt in the outbox. The cheap checks first: the signature
        # is verified only for a reply that would act on a receipt, so junk costs no Ed25519 work.
        if msg.get("v") != version:
            return "unsigned"  # v1 acks and rejects carried no signature
        seq = msg.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return "malformed"
        if msg.get("charger") != self.charger_id:
            return "wrong_charger"
        env = self.outbox.get(seq)
        if env is None:
            return "not_pending"  # answered before (a repeat), or never issued
        if msg.get("receipt") != receipt_id(env):
            return "wrong_receipt"
        if not self.trust.provisioned:
            self.trust = trust_mod.load(self.flash)  # provisioned after boot
        return signed_reply.check(self.trust, self.signer.verify,
                                  signed_bytes(self.trust.chain_id, self.charger_id, msg), msg)
