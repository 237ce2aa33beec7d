"""Run code under real MicroPython (the WebAssembly port from npm) from a pytest test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from chargerhost import LIB_DIRS

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("mpy_run.mjs")


class MicroPythonError(AssertionError):
    """The code raised under MicroPython; the message holds its traceback."""


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed; MicroPython tests need Node.js 20")
    return node


def run_micropython(*scripts: str, heap_bytes: int = 4 * 1024 * 1024, lib_dirs: Sequence[Path] = LIB_DIRS,
                    timeout: float = 240) -> str:
    """Run each script as one top-level runPython call with the modules of `lib_dirs` (default
    the firmware's core, drivers and shell) flat in /lib, as on the device; return stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, code in enumerate(scripts):
            f = Path(tmp) / f"script{i}.py"
            f.write_text(code)
            files.append(str(f))
        proc = subprocess.run(
            [node_binary(), str(RUNNER), str(heap_bytes), os.pathsep.join(map(str, lib_dirs)), *files],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if proc.returncode != 0:
        raise MicroPythonError(f"MicroPython failed:\n{proc.stderr}\nstdout:\n{proc.stdout}")
    return proc.stdout
