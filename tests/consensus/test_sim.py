"""The deterministic simulator: the real core under faults and a Byzantine validator must show
no violation; a deliberately broken core must be caught; a seed must replay exactly."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from bureau.consensus import sim
from bureau.consensus.core import Core
from bureau.consensus.sim import MODES, main, run_seed, run_seeds

ROOT = Path(__file__).resolve().parents[2]


def test_hundred_seeds_of_four_nodes_have_no_violation():
    summary = run_seeds(range(100), nodes=4)
    assert summary["seeds"] == 100
    assert summary["safety_violations"] == 0 and summary["liveness_failures"] == 0, summary["failed_seeds"]
    assert summary["heights_committed"] >= 100 * 10
    assert set(summary["byzantine_modes"]) == set(MODES)
    faults = summary["faults_injected"]
    for kind in ("dropped", "duplicated", "corrupted", "partitions", "crashes", "torn_writes", "restarts",
                 "equivocations_sent"):
        assert faults[kind] > 0, kind          # every kind of fault was exercised


def test_twenty_seeds_of_seven_nodes_have_no_violation():
    summary = run_seeds(range(1000, 1020), nodes=7)
    assert summary["safety_violations"] == 0 and summary["liveness_failures"] == 0, summary["failed_seeds"]
    assert summary["heights_committed"] >= 20 * 10


class NoLockCore(Core):
    """Algorithm 1 without its lock rule (L23/L29): prevotes any valid proposal."""

    def _lock_allows(self, hs, bh, vr):
        return True


class AmnesiacCore(Core):
    """Restarts without its last-signed record and WAL."""

    def __init__(self, *a, **kw):
        kw["wal"], kw["last_signed"] = (), None
        super().__init__(*a, **kw)


def first_failure(core_cls, seeds, **kw):
    for seed in seeds:
        r = run_seed(seed, 4, core_cls=core_cls, **kw)
        if r.violations:
            return seed, r
    return None, None


def test_the_simulator_catches_a_core_without_the_lock_rule():
    seed, r = first_failure(NoLockCore, range(60), byzantine="equivocate")
    assert seed is not None, "60 seeds did not expose a missing lock rule"
    assert r.violations[0].startswith("safety: two blocks committed at height")
    again = run_seed(seed, 4, byzantine="equivocate", core_cls=NoLockCore)
    assert again.violations == r.violations and again.digest == r.digest     # replays exactly
    assert run_seed(seed, 4, byzantine="equivocate").ok                       # the real core passes it


def test_the_simulator_catches_a_core_that_forgets_what_it_signed():
    seed, r = first_failure(AmnesiacCore, range(60))
    assert seed is not None
    assert r.violations[0].startswith("double_sign: validator")
    assert run_seed(seed, 4).ok


def test_a_seed_replays_exactly_and_seeds_differ():
    a, b = run_seed(7, 4), run_seed(7, 4)
    assert a.digest == b.digest and a.counts == b.counts and a.sim_ms == b.sim_ms
    assert run_seed(8, 4).digest != a.digest


def run_main(args):
    out = io.StringIO()
    stdout, sys.stdout = sys.stdout, out
    try:
        code = main(args)
    finally:
        sys.stdout = stdout
    lines = out.getvalue().strip().splitlines()
    return code, lines, json.loads(lines[-1])


def test_the_command_line_prints_a_json_summary_last_and_exits_zero():
    code, lines, last = run_main(["--seeds", "3", "--start", "40", "--verbose"])
    assert code == 0
    assert last["seeds"] == 3 and last["safety_violations"] == 0 and last["liveness_failures"] == 0
    assert {"heights_committed", "messages", "faults_injected", "digest"} <= set(last)
    assert sum(line.startswith("seed 4") for line in lines) == 3   # --verbose: one line per seed
    code, _, shared = run_main(["--seeds", "3", "--start", "40", "--shared-verify-cache"])
    assert shared["digest"] == last["digest"]                       # a memo changes nothing


def test_the_command_line_exits_non_zero_and_names_the_replay(monkeypatch):
    real = sim.run_seed
    monkeypatch.setattr(sim, "run_seed", lambda seed, nodes, heights, byzantine, core_cls, **kw:
                        real(seed, nodes, heights, byzantine, NoLockCore, **kw))
    code, lines, last = run_main(["--seeds", "40", "--byzantine", "equivocate"])
    assert code == 1 and last["safety_violations"] > 0 and last["failed_seeds"]
    seed = last["failed_seeds"][0]
    replay = f"  replay: python -m bureau.consensus.sim --seeds 1 --start {seed} --nodes 4 --byzantine equivocate --verbose"
    assert replay in lines
    code, lines, again = run_main(replay.split("sim ", 1)[1].split())
    assert code == 1 and again["failed_seeds"] == [seed]


def test_replay_does_not_depend_on_the_process_hash_seed():
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-m", "bureau.consensus.sim", "--seeds", "2", "--start", "11"],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        digests.add(json.loads(out.stdout.strip().splitlines()[-1])["digest"])
    assert len(digests) == 1
