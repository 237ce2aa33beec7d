"""Benchmark: how much heap the charger firmware needs, under the real MicroPython unix port at
the ESP32's word size (32-bit) with firmware/manifest.py frozen in, as the custom ESP32 image
has it (the board, an ESP32-WROOM-32E without PSRAM, gives MicroPython about 110 KB).

    app        smallest heap (KB, bisection) in which the whole application succeeds: device
               main.py with fake machine/network/ntptime against a real mosquitto and bureau
               node (tests/support/device_run.py: boot, enrollment, card tap, online
               authorization, charge, stop, signed receipt, publish, ack); goal <= 64 KB for
               the firmware, which is the smallest heap less what the fakes of the port's C
               modules (machine, network, ntptime, the bench link) take under the unix port
    flow       the same for the charger's pure flow, without network:
               tests/support/charger_flow_mp.py (the application's imports, key load, tariff,
               a metered session, receipt signing and outbox write, ack, signing vectors)
    sign       smallest heap for `import ed25519` and one signature
    figures    free heap after the flow's imports in a 96 KB heap; bytes one signature and one
               verification allocate (micropython.mem_total deltas, the port's allocation count)

The same is measured from source (firmware/core, drivers, shell and device on MICROPYPATH,
compiled at run time) for comparison (without the whole-application bisection). Usage:
python bench/firmware_heap.py [--frozen-only] [--no-app]. The last line printed is one JSON object.
"""

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import chargerhost  # noqa: E402,F401  (the device harness provisions with the firmware's modules)

from tests.support.charger_flow import (  # noqa: E402
    MANIFEST, SOURCE_PATH, flow_succeeds, run_flow, smallest_heap_kb,
)
from tests.support.mpunix import find_interpreter, frozen_interpreter, run_unix  # noqa: E402

SIGN_ONCE = "import ed25519\nassert len(ed25519.sign(bytes(range(32)), bytes(300))) == 64\n"


def sign_succeeds(interpreter, path=()):
    def succeeds(kb):
        return run_unix(interpreter, SIGN_ONCE, heap="%dK" % kb, path=list(path), check=False).returncode == 0
    return succeeds


def app_succeeds(rig, interpreter):
    def succeeds(kb):
        try:
            return not rig.session(interpreter, "%dK" % kb)["memory_errors"]  # none, even survived
        except AssertionError:  # the device died (MemoryError) or never got its ack
            return False
    return succeeds


def measure_app(interpreter):
    """Whole-application figures: smallest heap, and the lowest free heap the application
    logged in a 96 KB heap."""
    import tempfile

    from tests.support.device_run import ChargerRig, port_fakes_heap_bytes

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="firmware-heap-") as tmp:
        rig = None
        try:
            rig = ChargerRig(Path(tmp))
            at96 = rig.session(interpreter, "96K")
        except Exception as e:  # the harness itself did not get through a session: no figure
            if rig is not None:
                rig.close()
            frames = traceback.extract_tb(e.__traceback__)
            where = ([f for f in frames if f.filename.startswith(str(ROOT))] or frames)[-1]  # the innermost of ours
            return {"app_min_kb": None, "error": "%s %s in %s (%s:%d)" % (
                type(e).__name__, str(e).strip()[-300:], where.name, Path(where.filename).name, where.lineno)}
        try:
            smallest = smallest_heap_kb(app_succeeds(rig, interpreter), lo=16, hi=96)
        finally:
            rig.close()
    fakes = port_fakes_heap_bytes(interpreter)
    return {"app_min_kb": smallest, "port_fakes_bytes": fakes,
            "firmware_min_kb": None if smallest is None else round(smallest - fakes / 1024, 1),
            "app_heap_free_min_at_96k": at96["heap_free_min"],
            "seconds": round(time.perf_counter() - t0, 1)}


def measure(interpreter, path=()):
    t0 = time.perf_counter()
    figures, _ = run_flow(interpreter, "96K", path=path, check=False)
    if figures is None:  # from source the compiler needs more than 96 KB
        figures, _ = run_flow(interpreter, "1024K", path=path)
        figures["free_after_import_heap"] = "1024K"
    else:
        figures["free_after_import_heap"] = "96K"
    out = {
        "flow_min_kb": smallest_heap_kb(flow_succeeds(interpreter, path), hi=1024),
        "sign_min_kb": smallest_heap_kb(sign_succeeds(interpreter, path), hi=1024),
        "free_after_import": figures["free_after_import"],
        "free_after_import_heap": figures["free_after_import_heap"],
        "alloc_after_import": figures["alloc_after_import"],
        "sign_alloc_bytes": figures["sign_alloc_bytes"],
        "verify_alloc_bytes": figures["verify_alloc_bytes"],
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frozen-only", action="store_true", help="skip the from-source comparison")
    ap.add_argument("--no-app", action="store_true", help="skip the whole-application bisection")
    args = ap.parse_args(argv)
    frozen, why = frozen_interpreter(MANIFEST)
    if frozen is None:
        raise SystemExit("no frozen 32-bit MicroPython: " + why)
    result = {"bench": "firmware_heap"}
    if not args.no_app:
        result["app"] = measure_app(frozen)
    result["frozen"] = measure(frozen)
    if not args.frozen_only:
        plain, why = find_interpreter(32)
        if plain is None:
            raise SystemExit(why)
        result["source"] = measure(plain, SOURCE_PATH)
    if "app" in result and result["app"].get("error"):
        print("app    whole application not measured: the session did not complete in a 96 KB heap (%s)"
              % result["app"]["error"])
    elif "app" in result:
        a = result["app"]
        print("app    smallest heap for the whole application (frozen, 32-bit): %s KB, of which the port's fakes"
              " take %d bytes: %s KB for the firmware (goal 64); lowest free heap it logged in 96 KB: %s bytes"
              % (a["app_min_kb"], a["port_fakes_bytes"], a["firmware_min_kb"], a["app_heap_free_min_at_96k"]))
    for name, r in result.items():
        if name in ("bench", "app"):
            continue
        print("%-6s smallest heap: charger flow %s KB, import ed25519 + one signature %s KB; "
              "free after the flow's imports %d bytes (heap %s, %d in use); one signature allocates %d bytes, "
              "one verification %d" % (name, r["flow_min_kb"], r["sign_min_kb"], r["free_after_import"],
                                       r["free_after_import_heap"], r["alloc_after_import"],
                                       r["sign_alloc_bytes"], r["verify_alloc_bytes"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
