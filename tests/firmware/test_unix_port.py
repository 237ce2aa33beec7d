"""The unix-port interpreters the firmware tests run on are the ones the device resembles:
32-bit words, no hashlib.sha512, real sockets and tls."""

import pytest

from tests.support.mpunix import require_interpreter, run_unix

PROBE = """
import sys, hashlib, socket, select, tls, asyncio
print(32 if sys.maxsize < 2**32 else 64, hasattr(hashlib, "sha512"), sys.implementation.name)
"""


@pytest.mark.parametrize("bits", [32, 64])
def test_interpreter_matches_the_device(bits):
    mp = require_interpreter(bits)
    out = run_unix(mp, PROBE, heap="96K").stdout.split()
    assert out == [str(bits), "False", "micropython"]
