"""Benchmark: Ed25519 signing of a receipt-sized message under real MicroPython.

One MicroPython process per interpreter runs the firmware signer (firmware/lib/ed25519.py) and
the straightforward double-and-add signer (tests/support/ed25519_naive.py, loaded from its
source text) side by side, batches of each interleaved: the WebAssembly port
(tests/support/micropython.py; every batch its own top-level runPython call, as the port reclaims
memory only between those; pure Python), then the unix port, 32- and 64-bit
(tests/support/mpunix.py; SHA-512 in viper, which the naive signer uses too). Noise on a shared
machine only adds time, so each signer's fastest batch is its figure and the speedup is their
ratio (medians are reported too). The same timing code then runs under CPython for reference.

    fast       ed25519.sign(seed, msg) with the charger's one key (expanded once, as on the device)
    fast_cold  the same after ed25519.forget_key(): SHA-512 of the seed and a*B every time
    naive      RFC 8032 literally: double-and-add for A and for R, Fermat inversions

Usage: python bench/firmware_sign.py [--rounds 20] [--msg-bytes 300]
The last line printed is one JSON object.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "firmware" / "lib"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from tests.support.micropython import run_micropython  # noqa: E402
from tests.support.mpunix import find_interpreter, run_unix  # noqa: E402

NAIVE_SOURCE = (ROOT / "tests" / "support" / "ed25519_naive.py").read_text()

# Runs under MicroPython and CPython alike: ticks_ms where it exists, perf_counter otherwise.
TIMING = """
import time
try:
    _ticks, _diff = time.ticks_ms, time.ticks_diff
    def _elapsed_ms(t0):
        return _diff(_ticks(), t0)
except AttributeError:
    _ticks = time.perf_counter
    def _elapsed_ms(t0):
        return (time.perf_counter() - t0) * 1000.0

def batch_ms(sign, n, before=None):
    t0 = _ticks()
    for _ in range(n):
        if before is not None:
            before()
        sign(SEED, MSG)
    return _elapsed_ms(t0) / n
"""


def message(n):
    """A receipt-sized message: the receipt domain tag, then deterministic filler."""
    tag = b"EV-RECEIPT/v1\x00\x00\x00"
    return (tag + bytes((i * 37 + 11) & 255 for i in range(n)))[:n]


def setup_script(msg):
    return (
        TIMING
        + "import ed25519\n"
        + "SEED = bytes(range(32))\n"
        + "MSG = %r\n" % (msg,)
        + "assert ed25519.sign(SEED, MSG) == sign(SEED, MSG)\n"  # naive `sign` is loaded first
        + "RESULTS = {'fast': [], 'fast_cold': [], 'naive': []}\n"
    )


# batch sizes aim at >= ~60 ms per batch (ticks_ms has 1 ms steps)
BATCHES = [
    ("fast", "ed25519.sign", 24, "None"),
    ("naive", "sign", 4, "None"),
    ("fast_cold", "ed25519.sign", 16, "ed25519.forget_key"),
]


def scripts_for(rounds, msg):
    """The benchmark as a list of scripts run in one interpreter, one after the other."""
    scripts = [
        "import gc\ngc.collect()\nMEM_FREE_0 = gc.mem_free()\nMEM_ALLOC_0 = gc.mem_alloc()\n",
        "import ed25519\nimport sha512 as SHA512_MODULE\n",
        "gc.collect()\nMEM_FREE_1 = gc.mem_free()\nMEM_ALLOC_1 = gc.mem_alloc()\n",
        NAIVE_SOURCE,
        setup_script(msg),
    ]
    for _ in range(rounds):
        for name, fn, n, before in BATCHES:
            scripts.append("RESULTS[%r].append(batch_ms(%s, %d, %s))\n" % (name, fn, n, before))
    scripts.append(
        "import json, sys\n"
        "print(json.dumps({'results': RESULTS, 'mem_free_before': MEM_FREE_0, 'mem_free_after': MEM_FREE_1,"
        " 'import_heap': MEM_ALLOC_1 - MEM_ALLOC_0, 'native_sha512': SHA512_MODULE.NATIVE,"
        " 'table_bytes': ed25519.table_bytes(), 'version': list(sys.implementation.version)}))\n"
    )
    return scripts


def micropython_run(rounds, msg):
    """WebAssembly port: each script one top-level runPython call (memory is reclaimed only
    between those); pure Python throughout (no native emitter)."""
    out = run_micropython(*scripts_for(rounds, msg), timeout=300)
    return json.loads(out.strip().splitlines()[-1])


def unix_run(bits, rounds, msg):
    """Unix port (firmware/lib compiled at run time; SHA-512 in viper where the port has it):
    the same scripts as one program in one process. None when the interpreter is missing."""
    mp, why = find_interpreter(bits)
    if mp is None:
        print("(unix port, %d-bit: not run: %s)" % (bits, why))
        return None
    proc = run_unix(mp, "\n".join(scripts_for(rounds, msg)), heap="2M", path=[ROOT / "firmware" / "lib"],
                    timeout=300)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(res):
    """Fastest batch of each signer (noise on a shared machine only adds time; the batches are
    interleaved in one process) and the ratios."""
    best = {k: min(v) for k, v in res.items()}
    med = {k: statistics.median(v) for k, v in res.items()}
    return {
        "fast_ms": round(best["fast"], 3),
        "naive_ms": round(best["naive"], 3),
        "speedup": round(best["naive"] / best["fast"], 2),
        "fast_cold_ms": round(best["fast_cold"], 3),
        "speedup_cold": round(best["naive"] / best["fast_cold"], 2),
        "fast_median_ms": round(med["fast"], 3),
        "naive_median_ms": round(med["naive"], 3),
        "speedup_median": round(statistics.median(n / f for n, f in zip(res["naive"], res["fast"])), 2),
    }


def cpython_run(msg, seconds=1.5):
    import ed25519

    from tests.support import ed25519_naive

    env = {"SEED": bytes(range(32)), "MSG": msg}
    exec(TIMING, env)
    batch_ms = env["batch_ms"]
    assert ed25519.sign(env["SEED"], msg) == ed25519_naive.sign(env["SEED"], msg)
    res = {"fast": [], "naive": []}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(res["naive"]) < 3:
        res["fast"].append(batch_ms(ed25519.sign, 50, None))
        res["naive"].append(batch_ms(ed25519_naive.sign, 10, None))
    return {k: statistics.median(v) for k, v in res.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="interleaved batches of each signer")
    ap.add_argument("--msg-bytes", type=int, default=300, help="message size (a receipt is ~200-300)")
    args = ap.parse_args(argv)
    msg = message(args.msg_bytes)

    t0 = time.perf_counter()
    mp = micropython_run(args.rounds, msg)
    mp_wall = time.perf_counter() - t0
    runs = [("webassembly", "MicroPython %s (WebAssembly)", mp)]
    for bits in (32, 64):
        r = unix_run(bits, args.rounds, msg)
        if r is not None:
            runs.append(("unix%d" % bits, "MicroPython %%s (unix port, %d-bit)" % bits, r))
    cp = cpython_run(msg)

    out = {"bench": "firmware_sign"}
    print("Ed25519 signing of a %d-byte message, %d interleaved rounds per interpreter" % (len(msg), args.rounds))
    for key, label, r in runs:
        s = summary(r["results"])
        version = ".".join(str(x) for x in r["version"][:3])
        print(label % version + ", SHA-512 %s:" % ("viper" if r["native_sha512"] else "pure Python"))
        print("  fast  (key expanded once): %6.2f ms/sig  (median %.2f)" % (s["fast_ms"], s["fast_median_ms"]))
        print("  fast, cold key every time: %6.2f ms/sig" % s["fast_cold_ms"])
        print("  naive double-and-add:      %6.2f ms/sig  (median %.2f)" % (s["naive_ms"], s["naive_median_ms"]))
        print("  speedup %.2fx, cold key %.2fx (fastest batches; median of per-round ratios %.2fx)"
              % (s["speedup"], s["speedup_cold"], s["speedup_median"]))
        print("  import of ed25519 + sha512 from source: %d bytes of heap" % r["import_heap"])
        s.update(micropython=version, native_sha512=r["native_sha512"], import_heap_bytes=r["import_heap"])
        out[key] = s
    # the WebAssembly figures stay at the top level, as before
    out.update(out["webassembly"])
    print("  comb table: %d bytes (a bytes constant: in flash when frozen)" % mp["table_bytes"])
    print("CPython %s: fast %.3f ms/sig, naive %.3f ms/sig (%.1fx)"
          % (sys.version.split()[0], cp["fast"], cp["naive"], cp["naive"] / cp["fast"]))
    print("(WebAssembly part took %.1f s)" % mp_wall)
    out.update({
        "table_bytes": mp["table_bytes"],
        "cpython_fast_ms": round(cp["fast"], 4),
        "cpython_naive_ms": round(cp["naive"], 4),
        "msg_bytes": len(msg),
        "rounds": args.rounds,
    })
    print(json.dumps(out))


if __name__ == "__main__":
    main()
