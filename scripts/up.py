"""`just up`: run mosquitto and the bureau node(s) on loopback until interrupted (Ctrl-C).

Data stays in var/up/ between runs; remove that folder for a fresh chain."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from bureau.tools.stack import Stack


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--dir", default="var/up")
    args = p.parse_args()
    stack = Stack(Path(args.dir), nodes_count=args.nodes)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
    try:
        stack.start()
        print(f"mosquitto: 127.0.0.1:{stack.broker.port}, no anonymous access; logins in "
              f"{stack.broker.access.credentials_path} (docs/broker.md)")
        for n in stack.nodes:
            print(f"{n.node_id}: API {n.url} (OpenAPI {n.url}/schema), log {n.log_path}")
        print(f"genesis: {stack.genesis_path}; operator key: {Path(args.dir) / 'net' / 'operator.key'}")
        print("running; Ctrl-C stops")
        while not stopping:
            for n in stack.nodes:
                if not n.alive:
                    print(f"{n.node_id} exited; see {n.log_path}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
