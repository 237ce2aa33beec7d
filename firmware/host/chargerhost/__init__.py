"""Host shells that run the charger firmware (firmware/lib) under CPython: simulated chargers
for the demo, the fleet simulator and the tests."""

import sys
from pathlib import Path

FIRMWARE_LIB = Path(__file__).resolve().parents[2] / "lib"
if str(FIRMWARE_LIB) not in sys.path:
    sys.path.insert(0, str(FIRMWARE_LIB))
