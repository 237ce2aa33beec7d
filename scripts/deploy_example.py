"""Write deploy/example/: a four-bureau network on four hosts as `bureau init-network` makes it,
without its secrets. The network is made in a temporary folder and thrown away; what is kept is
each host's bureau.env (its broker password left out), the genesis with the hosts' addresses and
the broker's mosquitto.conf. `just deploy-example` runs it; docs/runbook.md explains the files."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bureau.tools.network import init_network

HOSTS = ["192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"]  # RFC 5737 documentation addresses
INSTALL_DIR = Path("/etc/bureau/net")
DATA_DIR = Path("/var/lib/bureau")
SECRET_SETTINGS = ("BUREAU_MQTT_PASSWORD",)


def without_secrets(env_text: str) -> str:
    lines = []
    for line in env_text.splitlines():
        name = line.split("=", 1)[0]
        if name in SECRET_SETTINGS:
            line = f"# {name}=... (the node's broker password: in the bureau.env init-network writes, never committed)"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write_example(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        net = Path(tmp) / "net"
        init_network(net, len(HOSTS), "ev-bureau-example", hosts=HOSTS, install_dir=INSTALL_DIR, data_dir=DATA_DIR)
        if out.exists():
            shutil.rmtree(out)
        (out / "broker").mkdir(parents=True)
        shutil.copy(net / "genesis.json", out / "genesis.json")
        shutil.copy(net / "broker" / "mosquitto.conf", out / "broker" / "mosquitto.conf")
        for i in range(1, len(HOSTS) + 1):
            (out / f"bureau-{i}").mkdir()
            (out / f"bureau-{i}" / "bureau.env").write_text(without_secrets((net / f"bureau-{i}" / "bureau.env").read_text()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "deploy" / "example"))
    write_example(Path(p.parse_args().out))


if __name__ == "__main__":
    main()
