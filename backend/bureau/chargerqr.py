"""`bureau charger qr`: the phone link a charger's QR code holds, and the code as a PNG.

The link is `<node>/phone#start=<charger id>` (docs/phone.md): a driver's phone opens the node's
phone page, which starts the charge at that charger after the driver confirms the cap. The part
after `#` never leaves the phone, so the link names no wallet and needs no secret."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from .cli import CommandError

CHARGER_ID = re.compile(r"[A-Za-z0-9._-]{1,32}\Z")


def phone_start_url(node_url: str, charger_id: str) -> str:
    """The deep link of a charger; `node_url` is the node's public base URL (https in service)."""
    if not CHARGER_ID.match(charger_id):
        raise CommandError(f"bad_charger_id: {charger_id!r} is not 1-32 of A-Z a-z 0-9 . _ -", 2)
    parts = urlsplit(node_url)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query or parts.fragment \
            or parts.path not in ("", "/"):
        raise CommandError(f"bad_node: {node_url!r} is not a node's base URL such as https://bureau.example:8443", 2)
    return f"{parts.scheme}://{parts.netloc}/phone#start={charger_id}"


def write_png(url: str, path: Path, scale: int) -> None:
    import segno
    # error correction M survives a scuffed sticker; the 4-module quiet zone is what scanners expect
    segno.make_qr(url, error="m").save(str(path), kind="png", scale=scale, border=4)


def _qr(args) -> int:
    url = phone_start_url(args.node, args.charger_id)
    if not url.startswith("https://"):
        print(f"bureau charger qr: warning: {args.node} is not https; phones refuse WebCrypto keys on plain http "
              "anywhere but localhost", file=sys.stderr)
    if args.png:
        try:
            write_png(url, Path(args.png), args.scale)
        except OSError as e:
            raise CommandError(f"cannot_write: {args.png}: {e.strerror}") from None
    print(url)
    return 0


def add_parser(sub) -> None:
    from .cliparse import int_range
    c = sub.add_parser("charger", help="what a charger carries: the QR code of its phone link")
    csub = c.add_subparsers(dest="charger_cmd", required=True)
    q = csub.add_parser("qr", help="print a charger's phone link (<node>/phone#start=<id>); --png writes its QR code",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("charger_id", help="the charger's id as enrolled")
    q.add_argument("--node", required=True, help="the public base URL of the node drivers' phones open, "
                                                 "e.g. https://bureau-1.example:8443")
    q.add_argument("--png", help="write the QR code to this PNG file")
    q.add_argument("--scale", type=int_range(1, 40), default=8, help="pixels per module (default %(default)s)")
    q.set_defaults(fn=_qr)
