"""Someone else writes a knob tunefleet is tuning (an administrator, configuration management, a
tuning daemon). The host where it happened stops tuning at once, nothing measured after the change
is kept, the run names the knob, the value and when, and the other writer's value survives the run
and `tunefleet restore` (never overwritten). The second writer here is a plain write to the knob's
/proc/sys file from outside tunefleet, as `sysctl -w` does it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FLEET
from tests.e2e.test_tuning import STORM, TUNEFLEET, knob_values

SOMAXCONN, SWAPPINESS = "net.core.somaxconn", "vm.swappiness"


def proc_path(knob: str) -> str:
    return "/proc/sys/" + knob.replace(".", "/")


def ns_read(host: str, knob: str) -> str:
    return subprocess.run(["ip", "netns", "exec", FLEET.ns(host), "cat", proc_path(knob)],
                          capture_output=True, text=True, check=True).stdout.strip()


def ns_write(host: str, knob: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", FLEET.ns(host), "sh", "-c", f"echo {value} > {proc_path(knob)}"], check=True)


def start_run(fleet_inventory, tmp_path: Path, spec: dict, *extra: str) -> tuple[subprocess.Popen, Path]:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--spec", str(spec_file), "--yes",
                             "--strategy", "random", "--seed", "5", "--verify-repeats", "2", "--confirm-top", "0",
                             "--run-dir", str(run_dir), "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, run_dir


def change_when_searched(proc, read, write, original: str, value: str, within: float = 90) -> float:
    """Once the search has written the knob, a second writer sets it to `value`; returns when."""
    deadline = time.monotonic() + within
    while read() == original:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the knob was not searched in time"
        time.sleep(0.05)
    time.sleep(0.3)  # mid-benchmark or between two: either way the next check sees it
    write(value)
    return time.time()


def trials_of(run_dir: Path, host: str) -> list[dict]:
    return [t for t in map(json.loads, (run_dir / "trials.jsonl").read_text().splitlines()) if t["host"] == host]


def assert_nothing_kept_after(run_dir: Path, host: str, changed_at: float) -> None:
    """The change was seen within one evaluation, and no trial measured after it is kept."""
    after = [t for t in trials_of(run_dir, host) if t["time"] > changed_at]
    assert [t for t in after if t["error"] is None] == [], "a trial measured after the change was kept"
    assert len(after) <= 1 and all(t["error"].startswith("drift: ") for t in after), after


def test_a_second_writer_stops_that_host_at_once_and_its_value_survives(fleet_inventory, inventory, tmp_path):
    """Per-namespace knob, three hosts: h2's somaxconn is set to 3333 by someone else mid-search."""
    before = knob_values(inventory)
    proc, run_dir = start_run(fleet_inventory, tmp_path, STORM, "--budget", "30")
    try:
        changed_at = change_when_searched(proc, lambda: ns_read("h2", SOMAXCONN),
                                          lambda v: ns_write("h2", SOMAXCONN, v), before["h2"][SOMAXCONN], "3333")
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    try:
        assert proc.returncode == 0, err[-3000:]
        result = json.loads(out)
        drift = result["drift"]["h2"]["knobs"][SOMAXCONN]
        assert drift["found"] == "3333" and drift["since"] <= changed_at <= drift["detected"] + 0.5, drift
        why = result["dropped"]["h2"]
        assert why.startswith(f"someone else changed {SOMAXCONN} to 3333 (tunefleet had ") and \
            why.endswith(": stopped tuning this host"), why
        assert f"h2: someone else changed {SOMAXCONN} to 3333" in err  # said as it happened
        assert result["drift"]["h2"]["left_as_set"][SOMAXCONN]["found"] == "3333"
        assert_nothing_kept_after(run_dir, "h2", changed_at)
        assert "verification" not in result["hosts"]["h2"]
        assert "verification" in result["hosts"]["h1"] and "verification" in result["hosts"]["h3"]
        # the other writer's value survives the run's end; every other knob and host is back
        after = knob_values(inventory)
        assert after["h2"] == {**before["h2"], SOMAXCONN: "3333"}
        assert {h: v for h, v in after.items() if h != "h2"} == {h: v for h, v in before.items() if h != "h2"}
        # and a later restore leaves it too: nothing of tunefleet's is left to write back
        p = subprocess.run([*TUNEFLEET, "restore", "--hosts", str(fleet_inventory), "--limit", "h2"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert ns_read("h2", SOMAXCONN) == "3333"
    finally:
        ns_write("h2", SOMAXCONN, before["h2"][SOMAXCONN])
    print(f"h2: changed at {changed_at:.2f}, detected at {drift['detected']:.2f} "
          f"({drift['detected'] - changed_at:+.2f} s), {len(trials_of(run_dir, 'h2'))} h2 trials")


SWAPPY = {**STORM, "workload_name": "swappiness under a storm",
          "benchmark_command": "tunefleet-bench accept-storm --clients 32",
          "action_space": [{"param": SWAPPINESS, "min": 10, "max": 100}]}


def test_a_second_writer_of_a_kernel_wide_knob_is_detected_and_wins(fleet_inventory, tmp_path, kernel_wide):
    """Kernel-wide knob on one host (the fleet's hosts share one kernel): the machine's
    vm.swappiness is set to 7 from outside every host mid-search. The only host stops, so the run
    ends with an error that names the knob, the value and when; 7 stays."""
    original = Path(proc_path(SWAPPINESS)).read_text().strip()
    proc, run_dir = start_run(fleet_inventory, tmp_path, SWAPPY, "--budget", "40", "--limit", "h1")
    try:
        changed_at = change_when_searched(proc, lambda: Path(proc_path(SWAPPINESS)).read_text().strip(),
                                          lambda v: Path(proc_path(SWAPPINESS)).write_text(v), original, "7")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err[-3000:]
        assert "Traceback" not in err
        line = err.strip().splitlines()[-1]
        assert line.startswith("tunefleet: error: every host failed: h1: someone else changed vm.swappiness to 7 "
                               "(tunefleet had "), line
        assert_nothing_kept_after(run_dir, "h1", changed_at)
        assert Path(proc_path(SWAPPINESS)).read_text().strip() == "7"
        seen = [t for t in trials_of(run_dir, "h1") if (t["error"] or "").startswith("drift: ")]
        print(f"h1 {SWAPPINESS}: changed at {changed_at:.2f}, the evaluation that saw it ended "
              f"{seen[0]['time'] - changed_at:+.2f} s later")
    finally:
        Path(proc_path(SWAPPINESS)).write_text(original)
    assert Path(proc_path(SWAPPINESS)).read_text().strip() == original


@pytest.mark.parametrize("how", ["kept", "crashed"])
def test_restore_leaves_an_administrators_change_and_says_so(fleet_inventory, inventory, how):
    """tunefleet left two knobs changed on h1 (kept with --keep-best, or its agent was killed and
    left a journal); then an administrator set one of them. `tunefleet restore` writes the other
    back and leaves the administrator's value, naming it."""
    import os
    import signal

    from controller.fleet.fleet import start_agent
    from controller.fleet.transport import SSHTransport

    fin = "net.ipv4.tcp_fin_timeout"
    before = knob_values(inventory)["h1"]
    original = {SOMAXCONN: ns_read("h1", SOMAXCONN), fin: ns_read("h1", fin)}
    transport = SSHTransport(inventory.hosts["h1"])
    try:
        host = start_agent("h1", transport, sudo=False)
        assert set(host.request("apply", {"values": {SOMAXCONN: "1999", fin: "17"}})["applied"]) == {SOMAXCONN, fin}
        if how == "kept":
            host.agent.close(keep=True)
        else:
            os.kill(host.facts["pid"], signal.SIGKILL)
    finally:
        transport.close()
    ns_write("h1", SOMAXCONN, "2500")  # the administrator
    try:
        p = subprocess.run([*TUNEFLEET, "restore", "--hosts", str(fleet_inventory), "--limit", "h1", "--json"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        report = json.loads(p.stdout)
        assert report["foreign"]["h1"][SOMAXCONN]["found"] == "2500"
        assert report["restored"]["h1"] == {fin: original[fin]}
        assert ns_read("h1", SOMAXCONN) == "2500" and ns_read("h1", fin) == original[fin]
        text = subprocess.run([*TUNEFLEET, "restore", "--hosts", str(fleet_inventory), "--limit", "h1"],
                              capture_output=True, text=True, timeout=60)
        assert text.returncode == 0 and "nothing to restore" in text.stdout, text.stdout
    finally:
        ns_write("h1", SOMAXCONN, original[SOMAXCONN])
        ns_write("h1", fin, original[fin])
    assert knob_values(inventory)["h1"] == before


def test_restore_reports_the_administrators_value_in_words(fleet_inventory, inventory):
    from controller.fleet.fleet import start_agent
    from controller.fleet.transport import SSHTransport

    original = ns_read("h3", SOMAXCONN)
    transport = SSHTransport(inventory.hosts["h3"])
    try:
        host = start_agent("h3", transport, sudo=False)
        host.request("apply", {"values": {SOMAXCONN: "1999"}})
        host.agent.close(keep=True)
    finally:
        transport.close()
    ns_write("h3", SOMAXCONN, "2500")
    try:
        p = subprocess.run([*TUNEFLEET, "restore", "--hosts", str(fleet_inventory), "--limit", "h3"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert (f"h3: {SOMAXCONN} left at 2500 as someone else set it (tunefleet had 1999, original {original}); "
                "not written back") in p.stdout, p.stdout
    finally:
        ns_write("h3", SOMAXCONN, original)
