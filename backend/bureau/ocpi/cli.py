"""`bureau ocpi issue-token`: a credentials token for a roaming partner. It is printed once; the
tokens file (BUREAU_OCPI_TOKENS_FILE) keeps only its SHA-256 (docs/ocpi.md)."""

from __future__ import annotations

from pathlib import Path


def _issue(args) -> int:
    from ..cliparse import CommandError
    from .tokens import issue
    try:
        token = issue(Path(args.tokens_file), args.party)
    except ValueError as e:
        raise CommandError(str(e)) from None
    print(token)
    return 0


def add_parser(sub) -> None:
    o = sub.add_parser("ocpi", help="OCPI 2.2.1: credentials tokens for roaming partners")
    cmds = o.add_subparsers(dest="ocpi_cmd", required=True)
    i = cmds.add_parser("issue-token", help="make a partner's credentials token: prints it once, appends its "
                                            "SHA-256 to the tokens file (the node reads it when it changes)")
    i.add_argument("--tokens-file", required=True, help="the node's BUREAU_OCPI_TOKENS_FILE")
    i.add_argument("--party", required=True, help="the partner it is for, e.g. CN*ABC (1-40 of A-Z a-z 0-9 * . _ -)")
    i.set_defaults(fn=_issue)
