"""Host shells that run the charger firmware under CPython: simulated chargers for the demo,
the fleet simulator and the tests.

The firmware's source is laid out by layer (firmware/core, firmware/drivers, firmware/shell,
firmware/device); on the device every module lands flat in /lib, so imports name modules only
(`import receipt`). Importing this package puts the three library layers on sys.path the same
way; LIB_DIRS is the one list of them for the host tools, the builds and the tests. It also
installs chargerhost.tls as the module `tls` (MicroPython's, on CPython's ssl), so the
firmware's broker_tls and MQTT client speak TLS here as on the device."""

import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2]
LIB_DIRS = tuple(FIRMWARE / layer for layer in ("core", "drivers", "shell"))  # the device's /lib
DEVICE_DIR = FIRMWARE / "device"  # main.py, board.py, uart_transport.py: ESP32 only

for _d in reversed(LIB_DIRS):
    if str(_d) not in sys.path:
        sys.path.insert(0, str(_d))

from . import tls as _tls  # noqa: E402

sys.modules.setdefault("tls", _tls)
