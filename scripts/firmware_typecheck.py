"""Type-check the firmware (firmware/core, drivers, shell and device) with mypy against the MicroPython
ESP32 stubs, i.e. against the modules and signatures the device really has (`machine`,
`network`, `ntptime`, `time.ticks_ms`, MicroPython's `asyncio`, ...), not CPython's.

The stubs come from the PyPI packages micropython-esp32-stubs (the port's modules) and
micropython-stdlib-stubs (MicroPython's reduced copy of typeshed's stdlib). Both are laid out
as one custom typeshed in a temporary directory (the port's modules become "stdlib" modules
there, which is what they are on the device) and mypy runs with `--custom-typeshed-dir` and
without site-packages, so nothing from the CPython environment leaks in.

Strictness: modules in CHECK_BODIES are checked with `check_untyped_defs` (their function
bodies are checked even where signatures are not annotated); the others at mypy's default.

One kind of finding is not counted: errors on lines inside an `except ImportError:` handler.
Those handlers are the CPython fallbacks of the MicroPython idioms (`const`, `uasyncio`,
`uerrno`, a port without `socket`); they never run on the device, and mypy reports them
because the fallback necessarily differs from the stub it falls back from. The script prints
how many it set aside.

The layers are checked too, by parsing every module's imports with `ast`: a module's layer is
its directory (core, drivers, shell, device); the pure core imports no shell and no driver,
drivers import no shell (a driver talks to a bus it is handed; a shell owns sockets, files, the
clock and the glue; the device modules may use everything). Each import across the rule is one
error line naming the module and the import.

Usage: python scripts/firmware_typecheck.py [-v]     exit status 0 when clean
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from chargerhost import DEVICE_DIR, LIB_DIRS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*LIB_DIRS, DEVICE_DIR]
CHECK_BODIES = [
    "controller", "clock", "supervisor", "status", "uplink", "display",
    "board", "uart_transport", "app", "main",
    "pilot", "meter", "modbus_rtu", "dlt645", "session", "outbox", "flash", "sha512",
]
# What each layer (a directory of firmware/) may import besides the platform's own modules.
MAY_IMPORT = {"core": ("core",), "drivers": ("core", "drivers"), "shell": ("core", "drivers", "shell"),
              "device": ("core", "drivers", "shell", "device")}
_ONE = {"core": "core", "drivers": "driver", "shell": "shell", "device": "device"}  # for the messages
STUB_DISTS = ("micropython-esp32-stubs", "micropython-stdlib-stubs")
_ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<msg>.*)$")


class StubsMissing(RuntimeError):
    pass


def _dist(name: str) -> md.Distribution:
    try:
        return md.distribution(name)
    except md.PackageNotFoundError:
        raise StubsMissing(f"{name} is not installed (pip install '.[dev]')") from None


def build_typeshed(dest: Path) -> Path:
    """A typeshed directory: MicroPython's stdlib stubs plus the ESP32 port's modules."""
    std = _dist("micropython-stdlib-stubs")
    port = _dist("micropython-esp32-stubs")
    std_root = Path(std.locate_file(""))
    shutil.copytree(std_root / "stdlib", dest / "stdlib")
    shutil.copytree(std_root / "stubs", dest / "stubs")
    versions = (dest / "stdlib" / "VERSIONS").read_text()
    listed = {line.split(":")[0].strip() for line in versions.splitlines() if ":" in line and not line.startswith("#")}
    extra = []
    for f in port.files or ():
        p = str(f)
        if p.endswith(".pyi") and "/" not in p:
            shutil.copyfile(Path(port.locate_file(f)), dest / "stdlib" / p)
            mod = p[:-4]
            if mod not in listed:
                extra.append(f"{mod}: 3.0-")
    if extra:
        (dest / "stdlib" / "VERSIONS").write_text(versions.rstrip("\n") + "\n" + "\n".join(sorted(extra)) + "\n")
    return dest


def fallback_lines(path: Path) -> set[int]:
    """Line numbers inside `except ImportError` handlers of a module."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ExceptHandler) or node.type is None:
            continue
        names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
        if any(isinstance(n, ast.Name) and n.id == "ImportError" for n in names):
            for stmt in node.body:
                out.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return out


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module name) of every absolute import in a module, wherever it stands."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return sorted(out)


def layer_errors(files: list[Path], root: Path = ROOT) -> list[str]:
    """One line per import across the layer rule, per module outside the layer directories and
    per module name found in two of them (the device's /lib is flat)."""
    layer_of: dict[str, str] = {}
    out = []
    for f in files:
        layer = f.parent.name
        if layer not in MAY_IMPORT:
            out.append(f"{f.relative_to(root)}:1: error: module {f.stem} is in no layer directory ({', '.join(MAY_IMPORT)})  [layer]")
        elif layer_of.setdefault(f.stem, layer) != layer:
            out.append(f"{f.relative_to(root)}:1: error: module {f.stem} is also in {layer_of[f.stem]}/  [layer]")
    for f in files:
        rel = f.relative_to(root)
        mine = f.parent.name
        if mine not in MAY_IMPORT:
            continue
        for lineno, name in imports_of(f):
            theirs = layer_of.get(name)
            if theirs is not None and theirs not in MAY_IMPORT[mine]:
                out.append(f"{rel}:{lineno}: error: {_ONE[mine]} module {f.stem} imports {_ONE[theirs]} module {name}  [layer]")
    return out


def sources(dirs: list[Path] | None = None) -> list[Path]:
    return [p for d in (dirs or SOURCES) if d.exists() for p in sorted(d.glob("*.py"))]


def run(verbose: bool = False, dirs: list[Path] | None = None, root: Path = ROOT) -> tuple[int, list[str], int]:
    """Run mypy over `dirs` (default: the firmware) below `root`; return (exit status, counted
    error lines, errors in CPython fallbacks set aside)."""
    dirs = dirs or SOURCES
    files = sources(dirs)
    layer = layer_errors(files, root)
    first: dict[str, Path] = {}
    for f in files:
        first.setdefault(f.stem, f)  # mypy refuses a second module of a name; the layer check names it
    with tempfile.TemporaryDirectory(prefix="fw-typecheck-") as tmp:
        typeshed = build_typeshed(Path(tmp) / "typeshed")
        cfg = Path(tmp) / "mypy.ini"
        cfg.write_text("\n".join([
            "[mypy]",
            f"custom_typeshed_dir = {typeshed}",
            "mypy_path = " + os.pathsep.join(str(d) for d in dirs),
            "no_site_packages = True",
            "warn_unused_ignores = True",
            "warn_redundant_casts = True",
            "show_error_codes = True",
            "show_column_numbers = False",
            "pretty = False",
            f"cache_dir = {Path(tmp) / 'cache'}",
            "",
            "[mypy-" + ",".join(CHECK_BODIES) + "]",
            "check_untyped_defs = True",
            "",
        ]))
        proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(cfg),
                               *[str(f.relative_to(root)) for f in first.values()]],
                              cwd=root, capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"mypy failed to run:\n{proc.stdout}\n{proc.stderr}")
    skip_cache: dict[str, set[int]] = {}
    counted: list[str] = []
    skipped = 0
    drop_notes_at: set[tuple[str, int]] = set()
    for line in proc.stdout.splitlines():
        m = _ERROR.match(line)
        if not m:
            continue
        path, lineno, kind = m["path"], int(m["line"]), m["kind"]
        if path not in skip_cache:
            skip_cache[path] = fallback_lines(root / path)
        if kind == "error":
            if lineno in skip_cache[path]:
                skipped += 1
                drop_notes_at.add((path, lineno))
                if verbose:
                    print("set aside (CPython fallback):", line)
                continue
            counted.append(line)
        elif (path, lineno) not in drop_notes_at and counted and counted[-1].startswith(f"{path}:{lineno}:"):
            counted.append(line)
    counted.extend(layer)
    errors = [c for c in counted if ": error: " in c]
    return (1 if errors else 0), counted, skipped


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    try:
        status, lines, skipped = run(verbose)
    except StubsMissing as e:
        print(e, file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    n = sum(1 for c in lines if ": error: " in c)
    print(f"firmware typecheck: {len(sources())} modules, {n} errors"
          f" ({skipped} in CPython fallbacks of `except ImportError` set aside)")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
