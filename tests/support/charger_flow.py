"""Run tests/support/charger_flow_mp.py (the charger's pure flow) under a MicroPython unix-port
interpreter at a given heap size, and find the smallest heap it succeeds in.

Used by tests/firmware/test_heap_budget.py and bench/firmware_heap.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from chargerhost import DEVICE_DIR, LIB_DIRS
from tests.support.mpunix import ROOT, run_unix

FLOW_SCRIPT = Path(__file__).with_name("charger_flow_mp.py")
# The image the heap tests, the device tests and the bench run: firmware/manifest.py frozen in,
# with the fakes of the ESP32 port's C modules (tests/device/mpfakes/manifest.py)
MANIFEST = ROOT / "tests" / "device" / "mpfakes" / "manifest.py"
SOURCE_PATH = [*LIB_DIRS, DEVICE_DIR]  # MICROPYPATH of a run from source
VECTORS = ROOT / "tests" / "vectors"
TARIFF = json.loads((VECTORS / "tariff.json").read_text())["tariff"]
START = 1_793_491_200  # 2026-11-01T00:00:00Z
FLOW_SEED = bytes(range(64, 96))


def signing_vectors() -> list[tuple[str, str]]:
    """(seed hex, message hex): the receipt vectors' keys and signed messages, and RFC 8032
    section 7.1 TEST 1-3 (TEST 1024 and SHA(abc) run in tests/firmware/test_ed25519.py)."""
    out = [(v["seed"], v["signed_message"]) for v in json.loads((VECTORS / "receipts.json").read_text())]
    out += [
        ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", ""),
        ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "72"),
        ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7", "af82"),
    ]
    return out


def _provision(flash_dir: Path) -> None:
    """The charger's flash as provisioned: its key and the bureau's genesis keys (bureau.json)."""
    from flash import Flash
    from trust import provision

    from tests.support.bureau_replies import GENESIS

    flash = Flash(str(flash_dir))
    flash.write_atomic("key.seed", FLOW_SEED)
    provision(flash, GENESIS)


def _spec(tmp: Path, ack: str | None) -> dict:
    flash = tmp / "flash"
    _provision(flash)
    return {"flash": str(flash), "tariff": TARIFF, "start": START, "ack": ack, "vectors": signing_vectors()}


@lru_cache(maxsize=1)
def expected_ack() -> str:
    """The flow run under CPython (the same firmware modules, the same deterministic inputs)
    gives the receipt; the bureau's signed ack of it is what the MicroPython run must accept."""
    from tests.support.bureau_replies import ack

    for d in map(str, SOURCE_PATH):
        if d not in sys.path:
            sys.path.append(d)
    spec_ = importlib.util.spec_from_file_location("charger_flow_mp", FLOW_SCRIPT)
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    with tempfile.TemporaryDirectory(prefix="charger-flow-") as tmp:
        out = mod.run(_spec(Path(tmp), None))
    return ack(out["charger_id"], out["seq"], bytes.fromhex(out["envelope"])).decode()


def run_flow(interpreter: str, heap: str | None, *, path: list[Path] = (), check: bool = True):
    """Run the flow once in a fresh flash dir; (figures dict or None, CompletedProcess)."""
    ack = expected_ack()
    with tempfile.TemporaryDirectory(prefix="charger-flow-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps(_spec(Path(tmp), ack)))
        proc = run_unix(interpreter, FLOW_SCRIPT, heap=heap, path=list(path), args=[str(spec)], check=check,
                        cwd=Path(tmp))
    if proc.returncode != 0:
        return None, proc
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


def smallest_heap_kb(succeeds, lo: int = 8, hi: int = 256) -> int | None:
    """The smallest heap in KB in (lo, hi] for which succeeds(kb) holds (bisection; success is
    taken to be monotonic in the heap size), or None when it fails even at hi."""
    if not succeeds(hi):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if succeeds(mid):
            hi = mid
        else:
            lo = mid
    return hi


def flow_succeeds(interpreter: str, path: list[Path] = ()):
    def succeeds(kb: int) -> bool:
        figures, _ = run_flow(interpreter, "%dK" % kb, path=path, check=False)
        return figures is not None
    return succeeds


def copy_without(names: set[str], dest: Path) -> Path:
    """The firmware library (every module of LIB_DIRS, flat as in the device's /lib) copied to
    dest minus `names` (e.g. a native module, to run the pure path)."""
    dest.mkdir(parents=True, exist_ok=True)
    for lib_dir in LIB_DIRS:
        for src in lib_dir.glob("*.py"):
            if src.name not in names:
                shutil.copy(src, dest / src.name)
    return dest
