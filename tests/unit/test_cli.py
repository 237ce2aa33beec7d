"""`bureau` commands answer an operator's mistake in one line on stderr with exit 1 or 2, never a
traceback, and never make a key or a database that was not there."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bureau.cli import CommandError, action_args
from bureau.ledger.state import LedgerState
from bureau.ledger.tx import ACTIONS
from bureau.tools.mosquitto import free_port
from bureau.tools.network import init_network

ROOT = Path(__file__).resolve().parents[2]


def bureau(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bureau.cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def one_line(p: subprocess.CompletedProcess, code: int, says: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1 and says in p.stderr, p.stderr


def test_every_action_in_the_table_is_carried_out_by_the_ledger_and_listed_in_help():
    assert {a for a in ACTIONS} == {m[4:] for m in dir(LedgerState) if m.startswith("_op_")}
    p = bureau("operator", "--help")
    assert p.returncode == 0
    for action, spec in ACTIONS.items():
        assert f"\n  {action}\n" in p.stdout
        for key in spec:
            assert f"    {key}=" in p.stdout, key


def test_action_arguments_as_key_value_or_json():
    assert action_args("top_up", ["wallet_id=W-1", "amount_fen=500", "reference=bank:1"]) == \
        {"wallet_id": "W-1", "amount_fen": 500, "reference": "bank:1"}
    assert action_args("open_wallet", ["wallet_id=W-1", "public_key=00", "cards=04A1,04B2"])["cards"] == ["04A1", "04B2"]
    assert action_args("enroll_charger", ['{"charger_id": "C-1", "public_key": "1234"}']) == \
        {"charger_id": "C-1", "public_key": "1234"}  # a text stays text, though it looks like a number
    for words, says in [(["{bad"], "invalid JSON in the arguments"), (["wallet_id=W"], "top_up needs amount_fen"),
                        (["amount_fen=5x", "wallet_id=W", "reference=r"], "amount_fen must be an integer"),
                        (["wallet_id=W", "amount_fen=1", "reference=r", "memo=x"], "not memo"),
                        (["wallet_id"], "is not key=value")]:
        with pytest.raises(CommandError, match=says) as e:
            action_args("top_up", words)
        assert e.value.code == 2


def test_operator_with_invalid_json_is_one_line(tmp_path):
    one_line(bureau("operator", "--node", "http://127.0.0.1:9", "--key", str(tmp_path / "k"), "--operator", "o",
                    "top_up", '{"wallet_id": '), 2, "invalid JSON in the arguments")


def test_operator_with_a_missing_key_file_is_an_error_and_makes_no_key(tmp_path):
    key = tmp_path / "operator.key"
    one_line(bureau("operator", "--node", "http://127.0.0.1:9", "--key", str(key), "--operator", "operator-1",
                    "top_up", "wallet_id=W-1", "amount_fen=1", "reference=r"), 1, f"key file {key} does not exist")
    assert not key.exists()


def test_operator_against_an_unreachable_node_is_one_line(tmp_path):
    init_network(tmp_path / "net", 1)
    url = f"http://127.0.0.1:{free_port()}"
    one_line(bureau("operator", "--node", url, "--key", str(tmp_path / "net" / "operator.key"), "--operator",
                    "operator-1", "top_up", "wallet_id=W-1", "amount_fen=1", "reference=r"), 1,
             f"cannot reach the node at {url}")


def test_a_bad_command_line_is_one_line_with_exit_2():
    one_line(bureau("init-network", "--dir", "x", "--nodes", "0"), 2, "0 is out of range; allowed: 1..100")
    one_line(bureau("operator", "--node", "u", "--key", "k", "--operator", "o", "pay_out"), 2, "invalid choice")


@pytest.mark.parametrize("flag", ["--db", "--db-url"])
def test_verify_chain_refuses_a_missing_database_and_creates_none(tmp_path, flag):
    init_network(tmp_path / "net", 1)
    genesis = str(tmp_path / "net" / "genesis.json")
    db = tmp_path / "ledger.db"
    one_line(bureau("verify-chain", "--genesis", genesis, flag, str(db)), 1, f"database {db} does not exist")
    one_line(bureau("verify-chain", "--genesis", genesis, flag, f"sqlite:///{db}"), 1, "does not exist")
    assert not db.exists()


def test_verify_chain_refuses_a_database_without_a_chain_and_leaves_it_as_it_was(tmp_path):
    init_network(tmp_path / "net", 1)
    genesis = str(tmp_path / "net" / "genesis.json")
    empty = tmp_path / "empty.db"
    empty.touch()
    one_line(bureau("verify-chain", "--genesis", genesis, "--db", str(empty)), 1, f"{empty} holds no chain")
    assert empty.stat().st_size == 0  # opened read-only: no tables made in it
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE notes (t TEXT)")
    one_line(bureau("verify-chain", "--genesis", genesis, "--db", str(other)), 1, "holds no chain")
    one_line(bureau("verify-chain", "--genesis", str(tmp_path / "nope.json"), "--db", str(other)), 1, "no such file")


@pytest.mark.parametrize("cmd", ["current", "upgrade"])
def test_db_commands_refuse_a_missing_database_and_create_none(tmp_path, cmd):
    db = tmp_path / "ledger.db"
    one_line(bureau("db", cmd, "--db-url", f"sqlite:///{db}"), 1, f"database {db} does not exist")
    assert not db.exists()


def test_a_node_key_that_is_not_the_genesis_key_is_one_line(tmp_path):
    init_network(tmp_path / "net", 2)
    other = tmp_path / "net" / "bureau-2" / "node.key"  # a real key, but another node's
    env = {"BUREAU_NODE_ID": "bureau-1", "BUREAU_DATA_DIR": str(tmp_path / "data"),
           "BUREAU_GENESIS": str(tmp_path / "net" / "genesis.json"), "BUREAU_KEY_FILE": str(other)}
    import os
    p = subprocess.run([sys.executable, "-m", "bureau.cli", "run"], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env={**{k: v for k, v in os.environ.items() if not k.startswith("BUREAU_")}, **env})
    one_line(p, 1, "is not the key the genesis names for bureau-1")
