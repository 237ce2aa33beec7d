"""Every command of docs/runbook.md is real: each `bureau ...` line of its code blocks parses with
the node's command line (backend/bureau/cli.py), each `just ...` line names a recipe of the
justfile with arguments it takes, and the flags handed on to scripts/flash.py are its own."""

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bureau.cli import parser

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbook.md"
ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=\S*\Z")


def commands(text: str) -> list[list[str]]:
    """The `bureau` and `just` commands of the code blocks, as argument lists: leading variable
    assignments, `sudo -u USER`, `exec` and subshell parentheses dropped, a `#` comment cut."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            for part in re.split(r";|&&|\|", line.replace("<", "'<").replace(">", ">'")):
                words = [w.strip("()&") for w in shlex.split(part, comments=True)]
                words = [w for w in words if w]
                while words and (ASSIGNMENT.match(words[0]) or words[0] in ("exec", "set", "-a")):
                    words = words[1:]
                if words[:2] == ["sudo", "-u"]:
                    words = words[3:]
                if words and (Path(words[0]).name == "bureau" or words[0] == "just"):
                    found.append([Path(words[0]).name] + words[1:])
    return found


RUNBOOK_COMMANDS = commands(RUNBOOK.read_text())


def just_recipes() -> dict:
    just = ROOT / ".venv" / "bin" / "just"
    out = subprocess.run([str(just), "--dump", "--dump-format", "json"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)["recipes"]


def test_the_runbook_has_the_commands_it_is_checked_for():
    names = {tuple(c[:2]) for c in RUNBOOK_COMMANDS}
    for expected in [("bureau", "init-network"), ("bureau", "run"), ("bureau", "operator"), ("bureau", "db"),
                     ("bureau", "verify-chain"), ("bureau", "keygen"), ("just", "up"), ("just", "flash")]:
        assert expected in names, expected
    actions = {c[c.index(a)] for c in RUNBOOK_COMMANDS for a in ("rotate_charger_key", "rotate_operator_key",
                                                                 "retire_charger") if a in c}
    assert actions == {"rotate_charger_key", "rotate_operator_key", "retire_charger"}


def exact(cli: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser and its subcommands' without abbreviations: a flag must be spelt in full."""
    cli.allow_abbrev = False
    for action in cli._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.allow_abbrev = False
    return cli


@pytest.mark.parametrize("words", [c for c in RUNBOOK_COMMANDS if c[0] == "bureau"], ids=" ".join)
def test_a_bureau_command_parses(words):
    cli = exact(parser())
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            args = cli.parse_args(words[1:])
    except SystemExit as e:
        assert e.code == 0, out.getvalue()  # only --help may end the parse
        return
    if getattr(args, "cmd", None) == "operator":
        from bureau.cli import ISSUE_BINDING_CODE, action_args
        if args.action == ISSUE_BINDING_CODE:
            assert args.wallet and not args.args  # the code's wallet, no action arguments
        else:
            action_args(args.action, args.args)  # key=value words fit the action's arguments


@pytest.mark.parametrize("words", [c for c in RUNBOOK_COMMANDS if c[0] == "just"], ids=" ".join)
def test_a_just_command_names_a_recipe_with_arguments_it_takes(words):
    recipes = just_recipes()
    assert words[1] in recipes, f"no recipe {words[1]}"
    params = recipes[words[1]]["parameters"]
    given = words[2:]
    required = [p for p in params if p["default"] is None and p["kind"] == "singular"]
    assert len(given) >= len(required), words
    if not any(p["kind"] != "singular" for p in params):
        assert len(given) <= len(params), words
    if words[1] == "flash":
        flags = {w.split("=")[0] for w in given if w.startswith("--")}
        help_text = subprocess.run([sys.executable, str(ROOT / "scripts" / "flash.py"), "--help"], capture_output=True,
                                   text=True, check=True, env={**os.environ, "COLUMNS": "200"}).stdout
        assert flags and all(f in help_text.split() or f"[{f}" in help_text for f in flags), flags
