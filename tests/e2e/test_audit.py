"""`tunefleet audit`: reads every host and changes nothing.

Nothing changes: every /proc/sys setting (a writable file) of every host, and the machine's
kernel-wide ones, reads the same before and after, except those the kernel changes by itself
(measured, not listed by hand: the values that already differ between two snapshots taken before,
such as kernel.ns_last_pid), and no file in the agent's state folder is added or touched. What it
says: the current values, a past run's persisted winner and the drift from it (a value changed by
hand, a drop-in edited away), a TuneD profile's values as the host has the profile, and who manages
each knob.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import FLEET
from tests.e2e.test_drift import SOMAXCONN, ns_read, ns_write
from tests.e2e.test_tuning import STORM, TUNEFLEET

HOSTS = ("h1", "h2", "h3")
SNAPSHOT = r"""
import os, sys
out = {}
for root, dirs, files in os.walk("/proc/sys"):
    for f in files:
        p = os.path.join(root, f)
        try:
            if not os.stat(p).st_mode & 0o222:
                continue  # a counter (fs.dentry-state, ...), not a setting
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
            try:
                out[p] = os.read(fd, 65536).decode("utf-8", "replace")
            finally:
                os.close(fd)
        except OSError:
            pass
import json; json.dump(out, sys.stdout)
"""


def proc_sys(host: str | None) -> dict[str, str]:
    """Every readable /proc/sys file, as a process of `host` (None: the machine) reads it."""
    wrap = ["ip", "netns", "exec", FLEET.ns(host)] if host else []
    p = subprocess.run([*wrap, "python3", "-I", "-c", SNAPSHOT], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(p.stdout)


def snapshot() -> dict:
    return {h: proc_sys(h) for h in (*HOSTS, None)}


def state_files(host: str) -> list[str]:
    pid = (FLEET.dir / host / "sshd.pid").read_text().strip()
    return sorted(subprocess.run(["nsenter", "--target", pid, "--mount", "find", "/root/.tunefleet", "-printf",
                                  r"%p %s %T@\n"], capture_output=True, text=True, check=True).stdout.splitlines())


def audit(*args: str) -> dict:
    p = subprocess.run([*TUNEFLEET, "audit", *args, "--json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_audit_changes_nothing_on_any_host(fleet_inventory, tmp_path):
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps(STORM))
    first, second = snapshot(), snapshot()
    by_itself = {(h, p) for h in first for p in first[h] if second[h].get(p) != first[h][p]}
    files = {h: state_files(h) for h in HOSTS}
    report = audit("--hosts", str(fleet_inventory), "--spec", str(spec))
    report_all = audit("--hosts", str(fleet_inventory))  # every knob of the catalog
    after = snapshot()
    changed = [(h, p) for h in second for p in second[h] if (h, p) not in by_itself and after[h].get(p) != second[h][p]]
    assert changed == [], changed[:10]
    assert sum(len(v) for v in second.values()) > 500  # the snapshot did read /proc/sys
    assert {h: state_files(h) for h in HOSTS} == files  # no agent started (its lock file untouched), nothing uploaded
    for h in HOSTS:
        assert report["hosts"][h]["knobs"][SOMAXCONN]["current"] == ns_read(h, SOMAXCONN)
    assert len(report_all["hosts"]["h1"]["knobs"]) > 10 and report["writes"] == 0
    print(f"audit of {len(HOSTS)} hosts: {report['elapsed_s']:.2f} s; {len(by_itself)} values changed by themselves")


def test_audit_of_a_persisted_run_reports_drift_since(fleet_inventory, tmp_path):
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps(STORM))
    drop_in = FLEET.dir / "h1" / "etc" / "sysctl.d" / "90-tunefleet.conf"
    original = ns_read("h1", SOMAXCONN)
    p = subprocess.run([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--limit", "h1", "--spec", str(spec),
                        "--yes", "--json", "--strategy", "random", "--seed", "2", "--budget", "6", "--verify-repeats",
                        "4", "--confirm-top", "0", "--persist", "--run-dir", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300)
    try:
        assert p.returncode == 0, p.stderr[-3000:]
        best = json.loads(p.stdout)["best_config"][SOMAXCONN]
        run = str(tmp_path / "run")
        knob = audit("--hosts", str(fleet_inventory), "--limit", "h1", run)["hosts"]["h1"]["knobs"][SOMAXCONN]
        assert knob["current"] == knob["reference"] == best and knob["matches"] and knob["drift"] is None
        assert knob["boot"]["path"] == "/etc/sysctl.d/90-tunefleet.conf"
        ns_write("h1", SOMAXCONN, "2222")  # by hand, after the run
        knob = audit("--hosts", str(fleet_inventory), "--limit", "h1", run)["hosts"]["h1"]["knobs"][SOMAXCONN]
        assert knob["drift"] == f"now 2222, the run persisted {best}: changed since (by hand, or by a tool)"
        drop_in.write_text(drop_in.read_text().replace(f"{SOMAXCONN} = {best}", f"{SOMAXCONN} = 999"))
        knob = audit("--hosts", str(fleet_inventory), "--limit", "h1", run)["hosts"]["h1"]["knobs"][SOMAXCONN]
        assert knob["drift"] == f"/etc/sysctl.d/90-tunefleet.conf now sets 999, the run persisted {best}"
        text = subprocess.run([*TUNEFLEET, "audit", "--hosts", str(fleet_inventory), "--limit", "h1", run],
                              capture_output=True, text=True, timeout=60).stdout
        assert "drift since the persisted run: /etc/sysctl.d/90-tunefleet.conf now sets 999" in text, text
    finally:
        drop_in.unlink(missing_ok=True)
        ns_write("h1", SOMAXCONN, original)
        subprocess.run([*TUNEFLEET, "restore", "--hosts", str(fleet_inventory), "--limit", "h1"],
                       capture_output=True, text=True, timeout=60)
    assert ns_read("h1", SOMAXCONN) == original


def test_audit_against_a_tuned_profile_as_the_host_has_it(fleet_inventory):
    tuned = Path("/usr/lib/tuned/network-throughput/tuned.conf")
    if not tuned.exists():
        import pytest

        pytest.skip("TuneD's profiles are not installed")
    h = audit("--hosts", str(fleet_inventory), "--limit", "h2", "--profile", "tuned:network-throughput")["hosts"]["h2"]
    knobs = h["knobs"]
    # network-throughput's own values, and what it includes (throughput-performance) beneath them
    assert knobs["net.ipv4.tcp_rmem"]["reference"] == "4096 87380 16777216"
    assert knobs["vm.swappiness"]["reference"] == "10"
    assert knobs[SOMAXCONN]["reference"] == ">2048"  # TuneD's "at least"
    assert knobs[SOMAXCONN]["matches"] == (int(ns_read("h2", SOMAXCONN)) >= 2048)
    assert knobs["vm.swappiness"]["current"] == Path("/proc/sys/vm/swappiness").read_text().strip()
    assert os.environ.get("TUNEFLEET_TEST_FLEET", "") == FLEET.name
