"""`bureau ocpp ...`: the operator's side of OCPP charge points. `password-digest` turns a charge
point's Basic password (read from stdin, never an argument) into the digest its enrollment puts on
chain; `reset` and `availability` send a connected charge point those commands through the node
it is connected to, with a request signed by the operator's key (docs/ocpp.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import quote


def _digest(args) -> int:
    from ..cliparse import CommandError
    from . import password
    text = sys.stdin.readline().rstrip("\n")
    try:
        print(password.make_digest(text))
    except ValueError as e:
        raise CommandError(str(e)) from None
    return 0


def _command(args) -> int:
    import httpx

    from ..api.auth import authorization_header
    from ..cliparse import CommandError
    from ..crypto import load_key
    from ..tools.httpclient import shared_client
    from ..tools.pki import http_verify
    key = load_key(Path(args.key))
    verify = http_verify(args.ca_file and Path(args.ca_file))
    base = args.node.rstrip("/")
    if args.ocpp_cmd == "reset":
        path = f"/v1/operator/ocpp/{quote(args.charger_id)}/reset?hard={'true' if args.hard else 'false'}"
    else:
        path = (f"/v1/operator/ocpp/{quote(args.charger_id)}/availability?connector={args.connector}"
                f"&available={'false' if args.inoperative else 'true'}")
    try:
        http = shared_client(verify)
        node_id = http.get(base + "/healthz", timeout=10).json()["node_id"]
        header = authorization_header(key, args.operator, "POST", path, node_id=node_id, principal="operator")
        resp = http.post(base + path, headers={"Authorization": header}, timeout=30)
    except (httpx.TransportError, httpx.InvalidURL) as e:
        raise CommandError(f"cannot reach the node at {args.node}: {e or type(e).__name__}") from None
    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    if resp.status_code != 200:
        raise CommandError(f"refused: {body.get('error', resp.status_code)}: {body.get('detail', resp.text[:200])}")
    print(json.dumps(body))
    return 0 if body.get("status") == "Accepted" else 1


def add_parser(sub) -> None:
    from ..cliparse import int_range
    o = sub.add_parser("ocpp", help="OCPP charge points: a password's digest for the enrollment; reset and "
                                    "availability commands", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = o.add_subparsers(dest="ocpp_cmd", required=True)
    d = cmds.add_parser("password-digest", help="read the charge point's password (16-40 characters) from stdin; "
                                                "print the salted scrypt digest for enroll_ocpp_charger")
    d.set_defaults(fn=_digest)

    def common(p) -> None:
        p.add_argument("charger_id", help="the OCPP charge point's identity")
        p.add_argument("--node", required=True, help="the API base URL of the node the charge point is connected to")
        p.add_argument("--key", required=True, help="the operator's key file")
        p.add_argument("--operator", required=True, help="the operator's id in the genesis")
        p.add_argument("--ca-file", help="the network's CA certificate to verify the node's HTTPS against")

    r = cmds.add_parser("reset", help="Reset (soft: when idle; --hard: at once); prints the answer as JSON, "
                                      "exit 1 unless Accepted")
    common(r)
    r.add_argument("--hard", action="store_true")
    r.set_defaults(fn=_command)
    a = cmds.add_parser("availability", help="ChangeAvailability of a connector (0: the whole charge point); "
                                             "exit 1 unless Accepted")
    common(a)
    a.add_argument("--connector", type=int_range(0, 255), default=0)
    a.add_argument("--inoperative", action="store_true", help="take it out of service (default: operative)")
    a.set_defaults(fn=_command)
