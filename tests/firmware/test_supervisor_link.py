"""supervisor.Link, the device's one connectivity path (Wi-Fi, DNS, broker; one backoff), case
by case under CPython and the same cases under the real MicroPython unix port (32-bit)."""

from pathlib import Path

import pytest

from tests.firmware import link_cases
from tests.support.mpunix import require_interpreter, run_unix

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("case", link_cases.CASES, ids=lambda c: c.__name__[5:])
def test_link_case(case):
    case()


def test_link_cases_under_micropython():
    mp = require_interpreter(32)
    out = run_unix(mp, Path(__file__).with_name("link_cases.py"), heap="96K", path=[ROOT / "firmware" / "lib"])
    assert out.stdout.split() == ["ok", str(len(link_cases.CASES))]
