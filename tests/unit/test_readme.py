"""README.md's commands must run as written: every `just ...` form it shows names a recipe of
the justfile and passes arguments that fit that recipe's positional parameters. The cheap
ones run for real."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def find_just() -> str | None:
    """`just` from PyPI's rust-just: in the venv, on PATH, or beside this Python's scripts."""
    for candidate in (Path(sys.executable).parent / "just", shutil.which("just"),
                      Path(sysconfig.get_path("scripts")) / "just"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


def recipes(just: str | None) -> dict[str, list[dict]]:
    """Recipe name -> parameters ({"name", "kind": singular|star|plus, "default"})."""
    if just is not None:
        out = subprocess.run([just, "--dump", "--dump-format", "json"], cwd=ROOT, capture_output=True, text=True)
        if out.returncode == 0:
            return {name: [{"name": p["name"], "kind": p["kind"], "default": p["default"]} for p in r["parameters"]]
                    for name, r in json.loads(out.stdout)["recipes"].items()}
    return parse_justfile((ROOT / "justfile").read_text())


_RECIPE_LINE = re.compile(r"^(@?)([A-Za-z_][\w-]*)((?:\s+[^:]+?)?)\s*:(?!=)")
_PARAM = re.compile(r"""([+*]?)(\$?)([A-Za-z_][\w-]*)(?:=("[^"]*"|'[^']*'|\S+))?""")


def parse_justfile(text: str) -> dict[str, list[dict]]:
    """The recipe headers of a justfile (`name PARAM="default" *REST: deps`)."""
    found = {}
    for line in text.splitlines():
        if not line or line[0].isspace() or line.startswith(("#", "set ")) or re.match(r"[\w-]+\s*:=", line):
            continue
        m = _RECIPE_LINE.match(line)
        if not m:
            continue
        params = []
        for p in _PARAM.finditer(m.group(3)):
            kind = {"+": "plus", "*": "star"}.get(p.group(1), "singular")
            default = p.group(4)
            params.append({"name": p.group(3), "kind": kind,
                           "default": default[1:-1] if default and default[0] in "\"'" else default})
        found[m.group(2)] = params
    return found


def readme_commands(text: str) -> list[str]:
    """The opening commands (the first ```sh block, `&&`-joined parts included) and every
    `just ...` form in the Tasks table."""
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no ```sh block"
    commands = []
    for line in block.group(1).splitlines():
        for part in line.split("#", 1)[0].split("&&"):
            if part.strip().startswith("just"):
                commands.append(part.strip())
    table = re.search(r"^## Tasks\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert table, "README.md has no Tasks section"
    for row in table.group(1).splitlines():
        commands += [c for c in re.findall(r"`([^`]+)`", row) if c.startswith("just ") or c == "just"]
    return commands


def misfits(command: str, known: dict[str, list[dict]]) -> str | None:
    """Why `command` would not run as the README says, or None."""
    words = shlex.split(command)
    if len(words) < 2:
        return "no recipe named"
    name, args = words[1], words[2:]
    if name not in known:
        return f"no recipe {name!r} in the justfile"
    for a in args:
        if re.match(r"[A-Za-z_][\w-]*=", a):
            return f"{a!r}: just takes recipe parameters by position (NAME=value sets a variable)"
    params = known[name]
    required = sum(1 for p in params if p["kind"] != "star" and p["default"] is None)
    variadic = any(p["kind"] in ("star", "plus") for p in params)
    if len(args) < required:
        return f"needs {required} arguments ({' '.join(p['name'] for p in params)}), got {len(args)}"
    if not variadic and len(args) > len(params):
        return f"takes at most {len(params)} arguments ({' '.join(p['name'] for p in params)}), got {len(args)}"
    return None


def assignment_forms(text: str, known: dict[str, list[dict]]) -> list[str]:
    """`NAME=value` spans in the Tasks table where NAME is a recipe parameter: written as if
    just took parameters by name."""
    table = re.search(r"^## Tasks\n(.*?)(?=^## |\Z)", text, re.S | re.M).group(1)
    names = {p["name"] for params in known.values() for p in params}
    return [c for c in re.findall(r"`([^`]+)`", table) if re.fullmatch(r"([A-Za-z_][\w-]*)=\S*", c)
            and c.split("=")[0] in names]


def problems(text: str, known: dict[str, list[dict]]) -> list[str]:
    out = [f"`{c}`: {why}" for c in readme_commands(text) if (why := misfits(c, known))]
    out += [f"`{c}`: parameters are positional (write the value after the recipe)"
            for c in assignment_forms(text, known)]
    return out


@pytest.fixture(scope="module")
def just() -> str | None:
    return find_just()


@pytest.fixture(scope="module")
def known(just) -> dict[str, list[dict]]:
    return recipes(just)


def test_readme_commands_fit_the_justfile(known):
    text = (ROOT / "README.md").read_text()
    assert problems(text, known) == []
    commands = readme_commands(text)
    assert "just demo" in commands and "just test" in commands and "just soak 10" in commands, commands


def test_parameters_by_name_are_caught(known):
    """The forms just refuses: NAME=value, unknown recipes, too many or too few arguments."""
    old = ("```sh\npip install rust-just && just demo\njust test\n```\n## Tasks\n| command | what |\n| --- | --- |\n"
           "| `just sim SEEDS=N` | 4 (or `NODES=7`) bureaus |\n| `just verify-chain GENESIS` | one short |\n"
           "| `just firmware-build now` | one too many |\n| `just simulate` | no such recipe |\n")
    found = problems(old, known)
    assert len(found) == 5, found
    assert found[0].startswith("`just sim SEEDS=N`")
    assert found[-1].startswith("`NODES=7`")


def test_justfile_parser_agrees_with_just(just, known):
    """The fallback parser (for a `just` without --dump-format json) reads the same recipes."""
    if just is None:
        pytest.skip("just is not installed (pip install rust-just)")
    assert parse_justfile((ROOT / "justfile").read_text()) == known


def test_just_list_and_a_short_simulation_run(just):
    if just is None:
        pytest.skip("just is not installed (pip install rust-just)")
    listed = subprocess.run([just, "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    for name in ("demo", "test", "sim", "soak"):
        assert re.search(rf"^\s+{name}\b", listed.stdout, re.M), listed.stdout
    sim = subprocess.run([just, "sim", "20"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert sim.returncode == 0, sim.stdout[-2000:] + sim.stderr[-2000:]
    result = json.loads(sim.stdout.strip().splitlines()[-1])
    assert result["seeds"] == 20 and result["safety_violations"] == 0, result
