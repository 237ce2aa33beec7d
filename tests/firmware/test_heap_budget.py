"""The charger firmware fits the heap of its board (an ESP32-WROOM-32E without PSRAM: about
110 KB for everything, Wi-Fi and TLS buffers included).

The real MicroPython unix port at the ESP32's word size (32-bit), with firmware/manifest.py
frozen in as the custom ESP32 image has it, runs the charger's pure flow
(tests/support/charger_flow_mp.py: imports, key load, tariff, a metered session, receipt
signing and outbox write, ack) in a 96 KB heap; its signatures are PyNaCl's."""

import pytest
from nacl.signing import SigningKey, VerifyKey

from bureau.receipts.codec import decode, signed_message
from tests.support.charger_flow import FLOW_SEED, MANIFEST, SOURCE_PATH, run_flow, signing_vectors
from tests.support.mpunix import require_frozen_interpreter, require_interpreter

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


def test_frozen_flow_fails_cleanly_when_the_heap_is_too_small(frozen32):
    """The budget test can fail: in a heap far too small the same flow runs out of memory."""
    figures, proc = run_flow(frozen32, "24K", check=False)
    assert figures is None and "MemoryError" in proc.stdout + proc.stderr


@pytest.mark.parametrize("bits", [32, 64])
def test_charger_flow_from_source(bits):
    """The same flow compiled from firmware/lib at run time (as the WebAssembly tests load it)."""
    mp = require_interpreter(bits)
    figures, _ = run_flow(mp, "512K", path=SOURCE_PATH)
    assert figures["bits"] == bits
    _check_flow(figures)
