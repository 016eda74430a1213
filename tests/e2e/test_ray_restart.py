"""A host actor whose process dies mid-run: the agent lost its channel and restored the host from its
journal by itself, and the next request fails as AgentGone (the run drops the host) instead of
continuing an evaluation on a fresh session whose values are the originals."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.conftest import FLEET

KNOB = "net.ipv4.tcp_fin_timeout"


def _value(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/sys/" + KNOB.replace(".", "/")],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_dead_actor_leaves_its_host_restored_and_its_next_request_fails(inventory, monkeypatch):
    from controller.errors import AgentGone
    from controller.fleet.fleet import ConnectOptions, Fleet

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    original = _value(FLEET.ns("h1"))
    changed = "17" if original != "17" else "18"
    fleet = Fleet.connect([inventory.hosts["h1"]], ConnectOptions(knobs=(KNOB,), workers="ray"))
    try:
        host = fleet.hosts["h1"]
        host.request("apply", {"values": {KNOB: changed}, "bounds": {}})
        assert _value(FLEET.ns("h1")) == changed
        os.kill(host.facts["worker"]["pid"], signal.SIGKILL)  # the actor's process, between two requests
        deadline = time.monotonic() + 15
        while _value(FLEET.ns("h1")) != original and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _value(FLEET.ns("h1")) == original, "the agent restores the host when its channel closes"
        with pytest.raises(AgentGone):  # a benchmark now would run on the originals, not on `changed`
            host.request("run", {"cmd": "true", "timeout": 10}, timeout=30)
    finally:
        fleet.close()
    assert _value(FLEET.ns("h1")) == original


def test_a_host_whose_actor_died_mid_run_rejoins_in_a_new_actor(fleet_inventory, inventory, tmp_path):
    """The run's side of it: h1's actor process is SIGKILLed while the search runs (one host per
    actor). Its agent restores h1 by itself; the run reconnects h1 in a new actor of its own, finds
    the same boot on the originals, and goes on evaluating it there: the result says h1 rejoined and
    its later trials record the new actor's process. Fails when a lost Ray host is only dropped."""
    import json
    import sys

    from tests.e2e.test_tuning import STORM, finished, knob_values

    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps({**STORM, "benchmark_command": "tunefleet-bench accept-storm --clients 256 --rounds 2"}))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_USAGE_STATS_ENABLED": "0"}
    before = knob_values(inventory)
    trials_file = tmp_path / "run" / "trials.jsonl"
    run = subprocess.Popen([sys.executable, "-m", "controller.cli", "run", "--hosts", str(fleet_inventory),
                            "--spec", str(spec), "--workers", "ray:1", "--strategy", "random", "--budget", "45",
                            "--verify-repeats", "2", "--confirm-top", "0", "--run-dir", str(tmp_path / "run"),
                            "--yes", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline, killed = time.monotonic() + 120, None
        while killed is None:
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.poll() else "slow"
            lines = trials_file.read_text().split("\n")[:-1] if trials_file.exists() else []  # whole lines
            searched = [json.loads(x) for x in lines if '"phase": "search"' in x and '"host": "h1"' in x]
            if searched:
                killed = searched[0]["worker"]["pid"]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.1)
    finally:
        if run.poll() is None and killed is None:
            run.kill()
            run.communicate()
    result = finished(run)  # stdout is the document alone: Ray's "(raylet) A worker died" went to stderr
    how = result.get("rejoined", {}).get("h1") or ""
    assert how.startswith("agent lost (") and "same boot" in how and how.endswith("rejoined"), result
    assert "h1" not in result["dropped"]
    trials = [json.loads(x) for x in trials_file.read_text().splitlines()]
    later = [t for t in trials if t["host"] == "h1" and t["error"] is None and t["worker"]["pid"] != killed]
    assert later and all(t["worker"]["kind"] == "ray" for t in later), \
        [t["worker"] for t in trials if t["host"] == "h1"]
    assert result["hosts"]["h1"]["worker"]["pid"] not in (killed, run.pid)
    assert knob_values(inventory) == before
