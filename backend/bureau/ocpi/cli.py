"""`bureau ocpi issue-token`: a token for a roaming partner, printed once; the tokens file
(BUREAU_OCPI_TOKENS_FILE) keeps only its SHA-256 (docs/ocpi.md). `--registration` makes OCPI's
token A, which the partner exchanges for its credentials token by the credentials module;
without it the token is a credentials token at once (handed over out of band)."""

from __future__ import annotations

import sys
from pathlib import Path


def _issue(args) -> int:
    from ..cliparse import CommandError
    from .tokens import CREDENTIALS, REGISTRATION, issue
    kind = REGISTRATION if args.registration else CREDENTIALS
    try:
        token = issue(Path(args.tokens_file), args.party, kind)
    except (ValueError, OSError) as e:
        raise CommandError(str(e)) from None
    print(token)
    if kind == REGISTRATION:
        print(f"a registration token (OCPI token A) for {args.party}: it opens only the versions endpoints and one "
              "POST of the partner's credentials to /ocpi/2.2.1/credentials", file=sys.stderr)
    else:
        print(f"a credentials token for {args.party}: it opens the tariffs and cdrs endpoints now", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    o = sub.add_parser("ocpi", help="OCPI 2.2.1: tokens for roaming partners")
    cmds = o.add_subparsers(dest="ocpi_cmd", required=True)
    i = cmds.add_parser("issue-token", help="make a partner's token: prints it once (what kind it is on stderr), "
                                            "adds its SHA-256 to the tokens file (the node reads it when it changes)")
    i.add_argument("--tokens-file", required=True, help="the node's BUREAU_OCPI_TOKENS_FILE")
    i.add_argument("--party", required=True, help="the partner it is for, e.g. CN*ABC (1-40 of A-Z a-z 0-9 * . _ -)")
    i.add_argument("--registration", action="store_true",
                   help="a registration token (OCPI token A) the partner exchanges by POST /ocpi/2.2.1/credentials "
                        "for its credentials token; without it: a credentials token at once")
    i.set_defaults(fn=_issue)
