import importlib
import sys
from pathlib import Path

import pytest

from chargerhost import LIB_DIRS
from tests.device import fakes

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "firmware" / "device"


@pytest.fixture
def device():
    """Fresh fake machine/network/ntptime in sys.modules, firmware/device importable; the
    device modules are imported anew for each test and removed afterwards."""
    machine, network, ntp = fakes.install()
    added = []
    for p in (str(DEVICE), *map(str, LIB_DIRS)):
        if p not in sys.path:
            sys.path.insert(0, p)
            added.append(p)
    for name in ("board", "uart_transport", "app"):
        sys.modules.pop(name, None)
    ns = type("Device", (), {})()
    ns.machine, ns.network, ns.ntp = machine, network, ntp
    ns.hw = fakes.hardware()
    ns.board = importlib.import_module("board")
    ns.uart_transport = importlib.import_module("uart_transport")
    yield ns
    fakes.uninstall()
    for p in added:
        sys.path.remove(p)
