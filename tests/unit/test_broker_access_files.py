"""The broker's access files are written by the broker-sync daemon and by operators' commands,
sometimes at once: every writer replaces whole files and starts from what the others last wrote,
so no writer fails on another's temporary file, no reader sees half a file and no change is lost."""

from __future__ import annotations

import json
import subprocess
import sys

from bureau.tools.mosquitto import BrokerAccess

WRITER = """
import sys
from bureau.tools.mosquitto import BrokerAccess
for i in range(15):
    access = BrokerAccess(sys.argv[1])
    if sys.argv[2] == "0":
        access.add(f"ops-{i}", "operator")
    else:
        access.set_chargers({f"GZ-{sys.argv[2]}-{i}": "pw"})
"""


def test_concurrent_writers_leave_whole_files(tmp_path):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)],
                                stderr=subprocess.PIPE, text=True) for n in range(3)]
    for _ in range(30):  # read while they write: every read sees whole JSON
        BrokerAccess(tmp_path)
    for w in writers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    chargers = json.loads((tmp_path / "chargers.json").read_text())
    assert len(chargers) == 1
    assert sorted(json.loads((tmp_path / "credentials.json").read_text())) == sorted(f"ops-{i}" for i in range(15))
    (cid,) = chargers
    assert (tmp_path / "passwd").read_text().startswith(f"{cid}:$")  # hashed by mosquitto_passwd
    assert f"user {cid}" in (tmp_path / "acl").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".lock"] == []
