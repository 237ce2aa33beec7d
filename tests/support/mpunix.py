"""Run firmware code under the real MicroPython unix port: real sockets, `select`, `asyncio`,
`tls`, and (32-bit build) the ESP32's word size, so heap figures match the device.

Where the interpreters come from: the `MICROPYTHON` (64-bit) and `MICROPYTHON32` (32-bit)
environment variables, else `../shared/micropython-unix/` beside the checkout. A test that
needs one and finds none is skipped with the reason, which `pytest -ra` prints in the report.

`frozen_interpreter(manifest)` builds a 32-bit interpreter with a freeze manifest's modules in
it, as a custom ESP32 image has them (`build.sh --32 --frozen`), cached under `build/mpunix/`
by the hash of everything the build reads.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# ../shared beside the checkout (a worktree one level further down finds it beside its parent)
SHARED = next((d / "shared" / "micropython-unix" for d in ROOT.parents[:2]
               if (d / "shared" / "micropython-unix").is_dir()), ROOT.parent / "shared" / "micropython-unix")
CACHE = ROOT / "build" / "mpunix"
_ENV = {64: "MICROPYTHON", 32: "MICROPYTHON32"}
_NAME = {64: "micropython", 32: "micropython32"}


# The unix port's make passes no -march to mpy-cross when it freezes, so frozen @viper/@native
# code would not compile; the 32-bit build's machine code is x86 (the ESP32 port sets xtensawin).
FROZEN_MPY_CROSS_FLAGS = "-march=x86"


class MicroPythonUnixError(AssertionError):
    """The script failed under MicroPython; the message holds its output."""


def _works(path: str) -> str | None:
    """None if `path` runs, else why not."""
    if not os.access(path, os.X_OK):
        return f"{path} is not an executable file"
    try:
        proc = subprocess.run([path, "-c", "print(1)"], capture_output=True, text=True, timeout=30)
    except OSError as e:  # a 32-bit binary without Debian's libc6-i386 fails to exec
        return f"{path} does not run here ({e.strerror}; the 32-bit one needs Debian's libc6-i386)"
    if proc.returncode != 0 or proc.stdout.strip() != "1":
        return f"{path} does not run: {proc.stderr.strip()[:200]}"
    return None


def find_interpreter(bits: int = 64) -> tuple[str | None, str]:
    """(path, "") of a working unix-port interpreter of that word size, or (None, why not)."""
    env = os.environ.get(_ENV[bits])
    candidates = [env] if env else []
    candidates.append(str(SHARED / _NAME[bits]))
    reasons = []
    for c in candidates:
        if not Path(c).exists():
            reasons.append(f"{c} does not exist")
            continue
        why = _works(c)
        if why is None:
            return c, ""
        reasons.append(why)
    return None, (f"no {bits}-bit MicroPython unix port: set {_ENV[bits]} or provide "
                  f"{SHARED / _NAME[bits]} ({'; '.join(reasons)})")


def require_interpreter(bits: int = 64) -> str:
    """The interpreter's path, or skip the calling test saying why (listed by `pytest -ra`)."""
    import pytest

    path, why = find_interpreter(bits)
    if path is None:
        pytest.skip(why)
    return path


def _build_script() -> Path | None:
    """build.sh beside the shared interpreters, or beside the ones the environment names."""
    for d in (SHARED, *(Path(os.environ[v]).parent for v in _ENV.values() if os.environ.get(v))):
        if (d / "build.sh").exists():
            return d / "build.sh"
    return None


def _manifest_inputs(manifest: Path) -> list[Path]:
    """Every file the frozen build reads: the manifest and the modules beside it, the firmware
    sources, the build script and the source tarball. A change to any of them means a new image."""
    files = [manifest, *sorted(p for p in manifest.parent.glob("*.py") if p != manifest),  # what it names beside it
             *sorted((ROOT / "firmware").rglob("*.py"))]
    script = _build_script()
    if script is not None:
        files.append(script)
        files.extend(sorted(script.parent.glob("*.tar.xz")))
    return files


def frozen_interpreter(manifest: Path) -> tuple[str | None, str]:
    """(path, "") of a 32-bit interpreter with `manifest` frozen in (built once per content),
    or (None, why no image can be built on this machine). A build that fails is the firmware's
    or the manifest's fault and raises MicroPythonUnixError, so it fails a test, never skips it."""
    script = _build_script()
    if script is None:
        return None, f"{SHARED / 'build.sh'} does not exist, so no frozen image can be built"
    if shutil.which("make") is None or shutil.which("gcc") is None:
        return None, "building a frozen MicroPython image needs make and gcc"
    digest = hashlib.sha256(FROZEN_MPY_CROSS_FLAGS.encode())
    for f in _manifest_inputs(Path(manifest)):
        digest.update(str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f.name).encode())
        digest.update(f.read_bytes())
    out = CACHE / digest.hexdigest()[:16] / "micropython32"
    if out.exists() and _works(str(out)) is None:
        return str(out), ""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:  # one build at a time, even across processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.exists():
            proc = subprocess.run(["bash", str(script), "--32", "--frozen", str(manifest), str(out) + ".tmp"],
                                  capture_output=True, text=True, timeout=1200,
                                  env={**os.environ, "MPY_CROSS_FLAGS": FROZEN_MPY_CROSS_FLAGS})
            if proc.returncode != 0:
                raise MicroPythonUnixError(f"frozen build of {manifest} failed: "
                                           f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
            os.replace(str(out) + ".tmp", out)
    why = _works(str(out))
    return (None, why) if why else (str(out), "")


def require_frozen_interpreter(manifest: Path) -> str:
    import pytest

    path, why = frozen_interpreter(manifest)
    if path is None:
        pytest.skip(why)
    return path


def run_unix(interpreter: str, script: str | Path, *, heap: str | None = "96K", path: list[Path] = (),
             args: list[str] = (), cwd: Path | None = None, env: dict | None = None,
             timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
    """Run `script` (a file, or source text) under `interpreter`. `path` becomes sys.path after
    the frozen modules (MICROPYPATH), so a frozen module wins over a file of the same name."""
    cmd = [interpreter]
    if heap:
        cmd += ["-X", f"heapsize={heap}"]
    if isinstance(script, Path):
        cmd.append(str(script))
    else:
        cmd += ["-c", script]
    cmd += list(args)
    full_env = dict(os.environ)
    full_env["MICROPYPATH"] = ":".join([".frozen", *map(str, path)])
    full_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=full_env)
    if check and proc.returncode != 0:
        raise MicroPythonUnixError(f"MicroPython exited with {proc.returncode}:\n{proc.stderr[-4000:]}\n"
                                   f"stdout:\n{proc.stdout[-4000:]}")
    return proc
