"""`tunefleet restore` tells the truth per host and knob: restored, already original, or failed
with its errno; it exits non-zero while anything is left changed, and the agent keeps the journal
until every knob is back.

On fleet host h1 (its own network namespace): an agent changes two per-namespace knobs and is
killed with SIGKILL, so nobody restores them. One of them is then put back by hand (already
original), and the journal is made to hold a knob the kernel refuses to write inside a network
namespace (net.core.rmem_max is read-only there), as a journal from a host whose rule changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from controller.fleet.fleet import start_agent

SOMAXCONN, FIN, RMEM_MAX = "net.core.somaxconn", "net.ipv4.tcp_fin_timeout", "net.core.rmem_max"
TUNEFLEET = [sys.executable, "-m", "controller.cli"]
JOURNAL = '"$HOME/.tunefleet/journal.json"'


def sh(transport, command):
    rc, out, err = transport.run(command)
    assert rc == 0, err
    return out.strip()


def proc(transport, name):
    return sh(transport, "cat /proc/sys/" + name.replace(".", "/"))


def restore(inventory_path, *extra):
    return subprocess.run([*TUNEFLEET, "restore", "--hosts", str(inventory_path), "--limit", "h1", *extra],
                          capture_output=True, text=True, timeout=120)


def edit_journal(transport, python):
    """Rewrite the agent's journal on the host with a Python expression over its entries `e`."""
    sh(transport, f"python3 -c 'import json,sys; p=sys.argv[1]; d=json.load(open(p)); e=d[\"entries\"]; "
                  f"d[\"entries\"]={python}; json.dump(d, open(p, \"w\"))' {JOURNAL}")


def test_restore_reports_each_knob_and_fails_while_one_is_left(fleet_inventory, ssh_transport):
    t = ssh_transport
    original = {SOMAXCONN: proc(t, SOMAXCONN), FIN: proc(t, FIN)}
    cap = proc(t, RMEM_MAX)
    host = start_agent("h1", t, sudo=False)
    try:
        target = "1777" if original[SOMAXCONN] != "1777" else "1778"
        applied = host.request("apply", {"values": {SOMAXCONN: target, FIN: 19}})["applied"]
        assert applied == {SOMAXCONN: target, FIN: "19"}
        sh(t, f"kill -9 {host.facts['pid']}")  # a crash: nobody restores
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and host.agent.exit_status(0.2) is None:
            pass
    finally:
        host.agent.abandon()
    assert proc(t, SOMAXCONN) == target
    sh(t, f"echo {original[FIN]} > /proc/sys/net/ipv4/tcp_fin_timeout")  # someone put it back by hand
    edit_journal(t, f'e + [["{RMEM_MAX}", "{int(cap) + 4096}"]]')

    p = restore(fleet_inventory)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stdout.splitlines()
    assert f"h1: {SOMAXCONN} restored ({original[SOMAXCONN]})" in lines, p.stdout
    assert f"h1: {FIN} already original ({original[FIN]})" in lines, p.stdout
    failed = [line for line in lines if line.startswith(f"h1: {RMEM_MAX} FAILED")]
    assert len(failed) == 1, p.stdout
    assert "EACCES" in failed[0] and "[errno 13]" in failed[0] and "still journaled" in failed[0], p.stdout
    assert f"error: h1: left changed: {RMEM_MAX}" in p.stderr
    assert proc(t, SOMAXCONN) == original[SOMAXCONN] and proc(t, FIN) == original[FIN]
    entries = json.loads(sh(t, f"cat {JOURNAL}"))["entries"]
    assert entries == [[RMEM_MAX, str(int(cap) + 4096)]]  # kept until it is back

    p = restore(fleet_inventory, "--json")  # tried again, still refused, said the same way in JSON
    assert p.returncode == 1
    report = json.loads(p.stdout)
    assert report["failed"]["h1"][RMEM_MAX]["errno"] == 13 and report["left"]["h1"] == [RMEM_MAX]

    edit_journal(t, f'[x for x in e if x[0] != "{RMEM_MAX}"] + [["{RMEM_MAX}", "{cap}"]]')  # cause fixed
    p = restore(fleet_inventory, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(p.stdout)
    assert report["unchanged"]["h1"] == {RMEM_MAX: cap} and report["left"]["h1"] == []
    assert sh(t, f"test -e {JOURNAL} && echo present || echo gone") == "gone"
    p = restore(fleet_inventory)
    assert p.returncode == 0 and p.stdout.strip() == "h1: nothing to restore", p.stdout + p.stderr
