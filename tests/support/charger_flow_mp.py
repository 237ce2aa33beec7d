# A complete charger flow without a network, run under the MicroPython unix port (frozen, or
# from the firmware's core, drivers and shell on MICROPYPATH) to measure what the application
# needs of the heap:
#
#   micropython32 -X heapsize=96K tests/support/charger_flow_mp.py SPEC.json
#
# SPEC.json: {"flash": dir (provisioned: key.seed, bureau.json), "tariff": {...}, "start": unix s,
# "ack": the bureau's signed ack of the receipt (JSON text) or null, "vectors": [[seed hex, msg
# hex], ...]}. It imports the modules device/app.py imports (minus the device-only machine,
# network, ntptime and board.py, which needs machine), loads the key from the flash dir, runs a
# metered session through the charger core, signs and writes the receipt to the outbox, takes
# the bureau's ack (its signature checked with ed25519.verify), and signs the vectors. The last
# line printed is one JSON object: the envelope, the vectors' signatures and public keys, and
# heap figures. CPython runs the same `run` (tests/support/charger_flow.py) to know the receipt
# the bureau acks; everything is deterministic.
import gc
import json
import sys

import authflow  # noqa: F401  (imported as the application does: its import-time heap counts)
import authz  # noqa: F401
import chargepoint  # noqa: F401
import charger
import clock  # noqa: F401
import controller  # noqa: F401
import display  # noqa: F401
import ed25519
import meter  # noqa: F401
import pilot  # noqa: F401
import rc522  # noqa: F401
import receipt
import status  # noqa: F401
import supervisor  # noqa: F401
import uart_transport  # noqa: F401
import uplink  # noqa: F401
from flash import Flash
from mqtt_client import MQTTClient  # noqa: F401

try:
    from micropython import mem_total  # the unix port counts every allocation
except ImportError:
    mem_total = None

_mem_free = getattr(gc, "mem_free", lambda: None)  # MicroPython's
_mem_alloc = getattr(gc, "mem_alloc", lambda: None)
gc.collect()
FREE_AFTER_IMPORT = _mem_free()
ALLOC_AFTER_IMPORT = _mem_alloc()


def allocated_by(fn, *args):
    """(result, bytes fn allocated): the port's allocation counter, else gc.mem_alloc with the
    collector off (needs a heap that holds all of it)."""
    if mem_total is not None:
        gc.collect()
        t0 = mem_total()
        out = fn(*args)
        return out, mem_total() - t0
    if _mem_alloc() is None:  # CPython
        return fn(*args), None
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        out = fn(*args)
        return out, gc.mem_alloc() - a0
    finally:
        gc.enable()


class Clock:
    def __init__(self, t):
        self.t = t

    def now(self):
        return self.t

    def synced(self):
        return True


class Meter:
    def __init__(self):
        self.wh = 1200000

    def read_wh(self):
        return self.wh


def counter_random(n, _state=[0]):
    """Deterministic bytes, so that the session id (and so the receipt) is reproducible."""
    _state[0] += 1
    return bytes((_state[0] * 131 + i * 17) & 255 for i in range(n))


def run(spec):
    flash = Flash(spec["flash"])
    clk = Clock(spec["start"])
    mtr = Meter()
    core = charger.Charger("CH-HEAP-1", flash, mtr, clk, ed25519, counter_random, "fw-heap", "MTR-HEAP-1",
                           default_tariff=spec["tariff"])
    core.boot()  # key load (the seed written above), tariff, sequence counter
    pk = core.public_key()
    core.start(receipt.AUTH_CARD_ONLINE, "04A1B2C3", "W-HEAP", 200000, "auth:heap")
    for _ in range(40):  # 40 minutes at 7 kW, a checkpoint to flash every 15 s of clock
        clk.t += 60
        mtr.wh += 117
        if core.tick():
            break
    gc.collect()
    free_in_session = _mem_free()
    env = core.stop(receipt.STOP_LOCAL)  # signs; outbox write
    ((topic, sent),) = core.due(0)
    assert sent == env and topic == core.receipt_topic
    fields, body, _ = receipt.decode_envelope(env)
    reply = None
    if spec["ack"] is not None:
        reply = core.on_reply(spec["ack"])[0]  # the signature is checked against bureau.json
        assert reply == "ack", (reply, core.refused_acks)
        assert core.outbox.pending() == []
    vectors = []
    for seed_hex, msg_hex in spec["vectors"]:
        seed = bytes.fromhex(seed_hex)
        msg = bytes.fromhex(msg_hex)
        sig = ed25519.sign(seed, msg)
        vpk = ed25519.public_key(seed)
        assert ed25519.verify(vpk, msg, sig)
        vectors.append([vpk.hex(), sig.hex()])
    # one signature with the charger's key (expanded once, as in service) and one verification
    msg = receipt.signed_message(body)
    ed25519.sign(core.seed, msg)  # the charger's key expanded again (the vectors replaced it)
    sig, sign_bytes = allocated_by(ed25519.sign, core.seed, msg)
    ok, verify_bytes = allocated_by(ed25519.verify, pk, msg, sig)
    assert ok
    gc.collect()
    return {
        "public_key": pk.hex(), "envelope": env.hex(), "seq": fields["seq"], "charger_id": core.charger_id,
        "ack": reply, "vectors": vectors,
        "free_after_import": FREE_AFTER_IMPORT, "alloc_after_import": ALLOC_AFTER_IMPORT,
        "free_in_session": free_in_session, "free_at_end": _mem_free(),
        "sign_alloc_bytes": sign_bytes, "verify_alloc_bytes": verify_bytes,
        "bits": 32 if sys.maxsize < 2**32 else 64,
    }


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(json.dumps(run(json.load(f))))
