"""The charger firmware fits the heap of its board (an ESP32-WROOM-32E without PSRAM: about
110 KB for everything, Wi-Fi and TLS buffers included).

The real MicroPython unix port at the ESP32's word size (32-bit), with firmware/manifest.py
frozen in as the custom ESP32 image has it, runs the whole application in a 64 KB heap (plus what
the rig's fakes of the port's C modules take: on the ESP32 they are in flash): booted
through the flash's main.py, against a real mosquitto and bureau node (boot, key, enrollment,
card tap, online authorization, a metered session, signed receipt, outbox, publish, ack). The
charger's pure flow (tests/support/charger_flow_mp.py: imports, key load, tariff, a metered
session, receipt signing and outbox write, ack) runs in a 96 KB heap; its signatures are
PyNaCl's."""

import pytest
from nacl.signing import SigningKey, VerifyKey

from bureau.receipts.codec import decode, signed_message
from chargerhost import LIB_DIRS
from tests.support.charger_flow import FLOW_SEED, MANIFEST, SOURCE_PATH, run_flow, signing_vectors
from tests.support.mpunix import require_frozen_interpreter, require_interpreter, run_unix

# The whole application's budget: what is left of the board's ~110 KB beside Wi-Fi and TLS
APP_HEAP_KB = 64
# The fakes of machine/network/ntptime and the bench link measured about 2.9 KB; more would
# let the allowance for them hide the firmware's own growth
PORT_FAKES_MAX = 4 * 1024
# A heap of 96 KB leaves room for Wi-Fi and TLS buffers beside the ~110 KB the board has; the
# flow must leave this much free after the imports for the MQTT client, TLS and the outbox.
FROZEN_HEAP = "96K"
FREE_AFTER_IMPORT_MIN = 60 * 1024  # measured: 65.5 KB


def _check_flow(figures):
    """The flow's receipt and signatures are what libsodium makes and accepts."""
    assert figures["ack"] == "ack"
    want_pk = bytes(SigningKey(FLOW_SEED).verify_key)
    assert bytes.fromhex(figures["public_key"]) == want_pk
    r, body, sig = decode(bytes.fromhex(figures["envelope"]))
    VerifyKey(want_pk).verify(signed_message(body), sig)
    assert sig == SigningKey(FLOW_SEED).sign(signed_message(body)).signature
    assert r.energy_wh > 0 and r.charger_id == "CH-HEAP-1" and r.stop_reason == "L"
    vectors = signing_vectors()
    assert len(figures["vectors"]) == len(vectors)
    for (seed, msg), (pk, sig) in zip(vectors, figures["vectors"]):
        sk = SigningKey(bytes.fromhex(seed))
        assert pk == bytes(sk.verify_key).hex()
        assert sig == sk.sign(bytes.fromhex(msg)).signature.hex()


@pytest.fixture(scope="module")
def frozen32():
    return require_frozen_interpreter(MANIFEST)


def test_frozen_charger_flow_runs_in_96k(frozen32):
    figures, _ = run_flow(frozen32, FROZEN_HEAP)  # nothing on MICROPYPATH: every module is frozen
    assert figures["bits"] == 32
    _check_flow(figures)
    assert figures["free_after_import"] >= FREE_AFTER_IMPORT_MIN, figures
    assert figures["sign_alloc_bytes"] > 0 and figures["verify_alloc_bytes"] > 0


def test_frozen_image_holds_every_library_module(frozen32, tmp_path):
    """Every module of core, drivers and shell is frozen under its bare name (as in the device's
    /lib): each imports with nothing but the frozen modules on the path."""
    names = sorted(p.stem for d in LIB_DIRS for p in d.glob("*.py"))
    script = "for n in %r:\n    __import__(n)\nprint('ok', len(%r))\n" % (names, names)
    out = run_unix(frozen32, script, heap="2M", cwd=tmp_path)
    assert out.stdout.split() == ["ok", str(len(names))]


def test_frozen_flow_fails_cleanly_when_the_heap_is_too_small(frozen32):
    """The budget test can fail: in a heap far too small the same flow runs out of memory."""
    figures, proc = run_flow(frozen32, "24K", check=False)
    assert figures is None and "MemoryError" in proc.stdout + proc.stderr


@pytest.mark.parametrize("bits", [32, 64])
def test_charger_flow_from_source(bits):
    """The same flow compiled at run time from firmware/core, drivers, shell and device (as the
    WebAssembly tests load it)."""
    mp = require_interpreter(bits)
    figures, _ = run_flow(mp, "512K", path=SOURCE_PATH)
    assert figures["bits"] == bits
    _check_flow(figures)


def test_whole_application_runs_in_64k(frozen32, tmp_path):
    """Boot through main.py and one complete session through its ack in the 64 KB budget: a
    MemoryError anywhere (the device dies, or a task's step fails and the ack never comes)
    fails the session."""
    from tests.support.device_run import ChargerRig, port_fakes_heap_bytes, rig_heap

    assert 0 < port_fakes_heap_bytes(frozen32) <= PORT_FAKES_MAX
    rig = ChargerRig(tmp_path)
    try:
        figures = rig.session(frozen32, rig_heap(frozen32, APP_HEAP_KB))
    finally:
        rig.close()
    assert figures["receipt"]["kind"] == "receipt" and figures["receipt"]["delta_fen"] < 0
    # app.run (what main.py calls) logged the heap after boot, and every log line of the
    # session was free of memory errors
    assert figures["heap_free"] and figures["heap_free"][0] < APP_HEAP_KB * 1024
    assert not figures["memory_errors"], figures["memory_errors"]
