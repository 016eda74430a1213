"""A host lost in any phase rejoins when it comes back within the rejoin window (the search phase is
tests/e2e/test_reboot.py's): its agent is killed (SIGKILL: nobody restores) while the run is in the
baseline, the confirmation or the verification; the new agent restores its journal of this boot,
the host is back on the run's originals, rejoins, and the phase goes on with it (a verification is
measured again whole). And a run that dropped a host for a reboot onto other values, then was
killed, is resumed with that host once its earlier boot's journal confirms the run's originals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FLEET, ROOT
from tests.e2e.test_drift import SOMAXCONN, ns_read
from tests.e2e.test_tuning import STORM, TUNEFLEET, knob_values

REBOOT = ROOT / "deploy" / "fleet-reboot.sh"


def trials(run_dir: Path) -> list[dict]:
    path = run_dir / "trials.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def agent_pid(run_dir: Path, host: str) -> int:
    return json.loads((run_dir / "hosts.json").read_text())[host]["facts"]["pid"]


@pytest.mark.parametrize("phase", ["baseline", "confirm", "verify"])
def test_a_host_lost_in_any_phase_rejoins_and_that_phase_goes_on_with_it(fleet_inventory, inventory, tmp_path, phase):
    before = knob_values(inventory)
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps({**STORM, "baseline_repeats": 3}))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--spec", str(spec), "--yes", "--json",
                             "--strategy", "random", "--seed", "4", "--budget", "9", "--verify-repeats", "3",
                             "--confirm-top", "3", "--rejoin-interval", "0.5", "--rejoin-window", "60",
                             "--run-dir", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(t["host"] == "h2" and t["phase"] == phase for t in trials(run_dir)):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, f"no {phase} evaluation of h2 within 120 s"
            time.sleep(0.02)
        os.kill(agent_pid(run_dir, "h2"), signal.SIGKILL)
        lost_at = time.time()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out)
    how = result["rejoined"]["h2"]
    assert how.endswith("values back on the run's originals; rejoined") and "same boot" in how, how
    assert "h2" not in result["dropped"]
    h2 = [t for t in trials(run_dir) if t["host"] == "h2"]
    assert any(t["phase"] == phase and t["error"] is None and t["time"] > lost_at for t in h2), \
        f"h2 was not measured in the {phase} phase after it rejoined"
    assert result["hosts"]["h2"]["baseline"] is not None and "verification" in result["hosts"]["h2"]
    if phase == "verify":  # measured again whole: a full schedule after the loss
        assert len([t for t in h2 if t["phase"] == "verify" and t["error"] is None and t["time"] > lost_at]) == 6
    assert knob_values(inventory) == before


def test_a_run_that_dropped_a_host_for_a_reboot_resumes_with_it(fleet_inventory, inventory, tmp_path):
    """h2 reboots mid-search onto the kernel's 4096 (its 128 had been set by hand): the run drops it,
    and is then killed. `run --resume` finds h2 on another boot, on 4096; the journal of h2's
    earlier boot says 128, which is the run's original: 128 is written back for the rest of the run,
    h2 is searched and verified again, and at the end it is left on its boot value, 4096."""
    before = knob_values(inventory)
    machine = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps(STORM))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--spec", str(spec), "--yes",
                             "--strategy", "random", "--seed", "3", "--budget", "60", "--verify-repeats", "2",
                             "--confirm-top", "0", "--rejoin-interval", "0.5", "--run-dir", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while ns_read("h2", SOMAXCONN) == before["h2"][SOMAXCONN]:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        p = subprocess.run([str(REBOOT), "h2", "--new-boot-id", "--kernel-defaults"], capture_output=True, text=True,
                           timeout=90, env=FLEET.env())
        assert p.returncode == 0, p.stderr
        said = ""
        while "dropping h2 from the run: rebooted" not in said:
            line = proc.stderr.readline()
            assert line, "the run ended before it dropped h2"
            said += line
        proc.kill()  # kill -9: the run dies with h2 dropped and its search unfinished
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    try:
        assert ns_read("h2", SOMAXCONN) == "4096"
        r = subprocess.run([*TUNEFLEET, "run", "--resume", str(run_dir), "--json"], capture_output=True, text=True,
                           timeout=400)
        assert r.returncode == 0, r.stderr[-3000:]
        result = json.loads(r.stdout)
        assert "h2 rebooted since the run" in r.stderr and "written back for the rest of the run" in r.stderr
        assert result["resumed"]["restored"]["h2"] == {SOMAXCONN: before["h2"][SOMAXCONN]}
        assert "h2" not in result["dropped"] and "verification" in result["hosts"]["h2"]
        resumed = [t for t in trials(run_dir) if t["host"] == "h2" and t["error"] is None]
        assert resumed and resumed[-1]["phase"] == "verify"
        assert ns_read("h2", SOMAXCONN) == "4096"  # left as its boot made it
        assert {h: v for h, v in knob_values(inventory).items() if h != "h2"} == \
            {h: v for h, v in before.items() if h != "h2"}
    finally:
        p = subprocess.run([str(REBOOT), "h2"], capture_output=True, text=True, timeout=90, env=FLEET.env())
        assert p.returncode == 0, p.stderr
    assert knob_values(inventory) == before
    pid = (FLEET.dir / "h2" / "sshd.pid").read_text().strip()
    assert subprocess.run(["nsenter", "--target", pid, "--mount", "cat", "/proc/sys/kernel/random/boot_id"],
                          capture_output=True, text=True).stdout.strip() == machine
