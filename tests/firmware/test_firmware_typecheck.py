"""scripts/firmware_typecheck.py: the firmware type-checks against the MicroPython ESP32 stubs,
and the check does catch what would break on the device (a CPython-only call, a misused
`machine` API, a wrong type into the controller)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "firmware_typecheck.py"
LAYERS = ("core", "drivers", "shell", "device")


def copy_firmware(tmp_path):
    """A copy of the firmware's layer directories below tmp_path; returns them by name."""
    dirs = {}
    for layer in LAYERS:
        dirs[layer] = tmp_path / "firmware" / layer
        shutil.copytree(ROOT / "firmware" / layer, dirs[layer])
    return dirs


def load_script():
    spec = importlib.util.spec_from_file_location("firmware_typecheck", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_firmware_typechecks_against_the_esp32_stubs():
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ", 0 errors" in proc.stdout
    n = sum(len(list((ROOT / "firmware" / layer).glob("*.py"))) for layer in LAYERS)
    assert f"{n} modules" in proc.stdout


def test_the_check_finds_device_errors(tmp_path):
    tc = load_script()
    dirs = copy_firmware(tmp_path)
    board = dirs["device"] / "board.py"
    src = board.read_text()
    # ADC.read_uv takes no argument on the ESP32; PWM has no duty_percent
    src = src.replace("v = adc.read_uv()", "v = adc.read_uv(1)")
    src = src.replace("self.pwm.duty_u16(duty_u16)", "self.pwm.duty_percent(duty_u16)")
    board.write_text(src)
    clk = dirs["shell"] / "clock.py"
    # time.monotonic does not exist on the device (outside an ImportError fallback it counts)
    clk.write_text(clk.read_text() + "\n\ndef uptime():\n    import time\n    return time.monotonic()\n")
    ctl = dirs["core"] / "controller.py"
    ctl.write_text(ctl.read_text().replace('self.error = "denied:" + reason', 'self.error = "denied:" + 5'))
    status, lines, skipped = tc.run(dirs=list(dirs.values()), root=tmp_path)
    text = "\n".join(lines)
    assert status == 1
    assert "board.py" in text and "read_uv" in text
    assert "duty_percent" in text
    assert "clock.py" in text and "monotonic" in text
    assert "controller.py:" in text and "__add__" in text
    assert skipped > 0  # the real fallbacks are still set aside


def test_fallback_lines_are_the_except_importerror_bodies(tmp_path):
    tc = load_script()
    f = tmp_path / "m.py"
    f.write_text("try:\n    from micropython import const\nexcept ImportError:\n    def const(x):\n"
                 "        return x\n\ntry:\n    import foo\nexcept (ValueError, ImportError):\n    foo = None\n"
                 "try:\n    x = 1\nexcept OSError:\n    x = 2\n")
    assert tc.fallback_lines(f) == {4, 5, 10}


def test_the_check_finds_imports_across_the_layers(tmp_path):
    tc = load_script()
    dirs = copy_firmware(tmp_path)
    assert tc.layer_errors(tc.sources(list(dirs.values())), tmp_path) == []
    charger = dirs["core"] / "charger.py"
    charger.write_text(charger.read_text().replace("import json\n", "import json\nfrom flash import Flash\n", 1))
    session = dirs["core"] / "session.py"
    session.write_text(session.read_text() + "\n\ndef _driver():\n    import meter\n    return meter\n")
    meter = dirs["drivers"] / "meter.py"
    meter.write_text(meter.read_text().replace("from meter_watch import", "import uplink\nfrom meter_watch import", 1))
    (dirs["shell"] / "topics.py").write_text("import json\n")  # /lib is flat: one topics module
    status, lines, _ = tc.run(dirs=list(dirs.values()), root=tmp_path)
    layer = [line for line in lines if line.endswith("[layer]")]
    assert status == 1
    assert any(line.startswith("firmware/core/charger.py:") and "core module charger imports shell module flash" in line
               for line in layer), layer
    assert any("core module session imports driver module meter" in line for line in layer), layer
    assert any("driver module meter imports shell module uplink" in line for line in layer), layer
    assert any("firmware/shell/topics.py:1: error: module topics is also in core/" in line for line in layer), layer
    assert len(layer) == 4, layer
