"""Command lines that answer a mistake in one line: the error a command raises for an expected
failure, an argparse parser whose errors are one line on stderr and exit code 2, and the
argument types the commands share."""

from __future__ import annotations

import argparse
import sys


class CommandError(Exception):
    """An expected failure of a command: its one-line message and exit code. (Here, not in
    cli.py, so that it is one class when `python -m bureau.cli` runs cli.py as __main__.)"""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def int_range(lo: int, hi: int):
    """An argument type: an integer lo..hi."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; allowed: {lo}..{hi}") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"{n} is out of range; allowed: {lo}..{hi}")
        return n

    parse.__name__ = f"{lo}..{hi}"
    return parse
