"""kill -9 of the controller in each phase, then `tunefleet run --resume`: the result arrives, the
budget holds, finished phases are not measured again, every host ends on its originals.

The kill is a real SIGKILL of a real `tunefleet run` on the local fleet; the phase is read from
trials.jsonl as the run writes it. Evaluations in flight at the kill are never recorded, so the
recorded search evaluations never exceed the budget (and at most one per host ran unrecorded).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter

import pytest

from tests.conftest import FLEET
from tests.e2e.test_tuning import PPO_STORM, STORM, TUNEFLEET, knob_values, run_cli

BUDGET = 12
HOSTS = 3


def _phases(run_dir) -> Counter:
    p = run_dir / "trials.jsonl"
    lines = p.read_text().splitlines() if p.exists() else []
    return Counter(json.loads(line)["phase"] for line in lines if line.strip())


def _run_and_kill(fleet_inventory, spec, run_dir, phase: str, at: int, strategy: str) -> Counter:
    """Start a run, SIGKILL it once trials.jsonl has `at` lines of `phase`; the phases recorded then."""
    proc = subprocess.Popen([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--spec", str(spec), "--yes",
                             "--budget", str(BUDGET), "--strategy", strategy, "--seed", "1", "--verify-repeats", "2",
                             "--run-dir", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while _phases(run_dir)[phase] < at:
            assert proc.poll() is None, f"the run ended before the {phase} phase: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, f"no {phase} trial within 180 s"
            time.sleep(0.05)
        proc.kill()
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    return _phases(run_dir)


@pytest.mark.parametrize("phase,at,strategy,spec", [
    ("baseline", 1, "random", STORM),
    ("search", 5, "bo", STORM),
    ("search", 7, "ppo", PPO_STORM),
    ("confirm", 1, "random", STORM),
    ("verify", 1, "bo", STORM),
])
def test_kill_9_then_resume_finishes_the_run(fleet_inventory, inventory, tmp_path, phase, at, strategy, spec):
    before = knob_values(inventory)
    spec_file = tmp_path / "storm.json"
    spec_file.write_text(json.dumps(spec))
    run_dir = tmp_path / "run"
    at_kill = _run_and_kill(fleet_inventory, spec_file, run_dir, phase, at, strategy)
    assert not (run_dir / "result.json").exists()

    started = time.monotonic()
    p = run_cli("--quiet", "run", "--resume", str(run_dir), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    after = _phases(run_dir)

    assert json.loads((run_dir / "result.json").read_text())["resumed"] == result["resumed"]
    assert (run_dir / "report.html").is_file()
    resumed = result["resumed"]
    assert resumed["from_phase"] == phase  # the phase the kill interrupted, not an earlier or a later one
    assert result["strategy"] == strategy and result["verification"] is not None
    # the budget: what the killed run recorded plus what the resumed one spent
    assert after["search"] <= BUDGET and result["evaluations"] == after["search"]
    assert resumed["evaluations_replayed"] == (at_kill["search"] if phase != "baseline" else 0)
    full_baseline = HOSTS * STORM["baseline_repeats"]
    if phase == "baseline":  # a partial baseline is measured again, whole
        assert after["baseline"] == at_kill["baseline"] + full_baseline
    else:  # a finished one is not
        assert after["baseline"] == full_baseline
    if strategy == "ppo":  # PPO continued from the policy it had learned, not from scratch
        assert resumed["checkpoint"] == str(run_dir / "ppo" / "ppo_latest.zip")
    confirm = result["confirm"]
    assert after["confirm"] == len(confirm["candidates"]) * confirm["repeats_per_host"] * HOSTS  # none twice
    if phase in ("confirm", "verify"):  # the search was over: nothing more searched
        assert after["search"] == at_kill["search"]
    if phase == "verify":  # the confirmation too; the verification is redone whole
        assert after["confirm"] == at_kill["confirm"]
        assert resumed["discarded"]["verify"] == at_kill["verify"]
        assert after["verify"] == at_kill["verify"] + HOSTS * 2 * 2
    assert knob_values(inventory) == before
    print(f"resume from {phase} ({strategy}): {time.monotonic() - started:.1f} s, "
          f"{resumed['evaluations_replayed']} evaluations replayed")


def test_resume_refuses_a_finished_run_and_a_missing_host(fleet_inventory, inventory, tmp_path):
    spec_file = tmp_path / "storm.json"
    spec_file.write_text(json.dumps(STORM))
    run_dir = tmp_path / "run"
    before = knob_values(inventory)
    _run_and_kill(fleet_inventory, spec_file, run_dir, "search", 1, "random")

    p = run_cli("run", "--resume", str(run_dir), "--hosts", str(fleet_inventory), "--limit", "h1,h2")
    assert p.returncode != 0 and "h3" in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("tunefleet: error: --resume: host(s) of the run")
    assert not (run_dir / "result.json").exists() and knob_values(inventory) == before
    p = run_cli("run", "--resume", str(run_dir), "--budget", "30")
    assert p.returncode != 0 and f"--budget 30 (the run was started with {BUDGET}) cannot change it" in p.stderr
    assert json.loads((run_dir / "options.json").read_text())["heartbeat_timeout"] == 30.0

    p = run_cli("run", "--resume", str(run_dir), "--json")
    assert p.returncode == 0, p.stderr[-2000:]
    p = run_cli("run", "--resume", str(run_dir))
    assert p.returncode != 0 and "complete already" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_cli("run", "--resume", str(tmp_path))
    assert p.returncode != 0 and "not a resumable run folder" in p.stderr


def _somaxconn(host: str) -> str:
    return subprocess.run(["ip", "netns", "exec", FLEET.ns(host), "sysctl", "-n", "net.core.somaxconn"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_host_left_changed_is_restored_from_its_journal_and_named(fleet_inventory, inventory, tmp_path):
    """The agents die with the controller (kill -9 of both, mid-search): nobody restores, the
    candidate values stay and the journals stay. The resumed run's agents restore them at start."""
    import os
    import signal

    before = knob_values(inventory)
    spec_file = tmp_path / "storm.json"
    spec_file.write_text(json.dumps(STORM))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--spec", str(spec_file), "--yes",
                             "--budget", str(BUDGET), "--strategy", "random", "--seed", "1", "--verify-repeats", "2",
                             "--run-dir", str(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while _phases(run_dir)["search"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        for host in json.loads((run_dir / "hosts.json").read_text()).values():
            os.kill(host["facts"]["pid"], signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    left = {h: _somaxconn(h) for h in before if _somaxconn(h) != before[h]["net.core.somaxconn"]}
    assert left, "no host was left changed: the kill came between two evaluations"

    p = run_cli("--quiet", "run", "--resume", str(run_dir), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    restored = json.loads(p.stdout)["resumed"]["restored"]
    assert set(left) <= set(restored)
    assert all(restored[h]["net.core.somaxconn"] == before[h]["net.core.somaxconn"] for h in left)
    assert knob_values(inventory) == before


def test_a_host_changed_outside_any_journal_is_refused(fleet_inventory, inventory, tmp_path):
    before = knob_values(inventory)
    spec_file = tmp_path / "storm.json"
    spec_file.write_text(json.dumps(STORM))
    run_dir = tmp_path / "run"
    _run_and_kill(fleet_inventory, spec_file, run_dir, "search", 1, "random")
    deadline = time.monotonic() + 30
    while knob_values(inventory) != before and time.monotonic() < deadline:  # the agents restore on EOF
        time.sleep(0.1)
    subprocess.run(["ip", "netns", "exec", FLEET.ns("h2"), "sysctl", "-qw", "net.core.somaxconn=300"], check=True)
    try:
        p = run_cli("run", "--resume", str(run_dir))
        assert p.returncode != 0 and "Traceback" not in p.stderr
        assert "h2: net.core.somaxconn is 300" in p.stderr.strip().splitlines()[-1]
        assert _somaxconn("h2") == "300" and not (run_dir / "result.json").exists()
    finally:
        subprocess.run(["ip", "netns", "exec", FLEET.ns("h2"), "sysctl", "-qw",
                        f"net.core.somaxconn={before['h2']['net.core.somaxconn']}"], check=True)
    assert knob_values(inventory) == before


def test_a_trials_line_cut_by_the_kill_is_dropped_and_said(fleet_inventory, inventory, tmp_path):
    """A kill in the middle of an append leaves half a line in trials.jsonl (made here by cutting
    the last line of a really killed run in half): --resume cuts it off, says so in one line, and
    finishes the run with whole lines only."""
    before = knob_values(inventory)
    spec_file = tmp_path / "storm.json"
    spec_file.write_text(json.dumps(STORM))
    run_dir = tmp_path / "run"
    _run_and_kill(fleet_inventory, spec_file, run_dir, "search", 4, "random")
    trials = run_dir / "trials.jsonl"
    data = trials.read_bytes()
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    trials.write_bytes(data[: len(data) - 1 - len(last) // 2])  # half the last line, no newline
    p = run_cli("run", "--resume", str(run_dir), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    notes = [line for line in p.stderr.splitlines() if "partial line" in line]
    assert notes == [f"--resume: trials.jsonl ended in a partial line ({len(last) - len(last) // 2} bytes, cut off "
                     "by the kill): dropped it, that evaluation is measured again"], p.stderr[-2000:]
    lines = trials.read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    result = json.loads(p.stdout)
    assert result["evaluations"] == BUDGET and result["verification"] is not None
    assert knob_values(inventory) == before
