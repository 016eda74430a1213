"""Host sessions in Ray actors: the same check and tuning run, with SSH and the agents living in
worker processes instead of the controller, K hosts to an actor (`--workers ray:K`)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.test_tuning import STORM, knob_values

TUNEFLEET = [sys.executable, "-m", "controller.cli"]


def test_check_and_run_with_ray_workers(fleet_inventory, inventory, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([*TUNEFLEET, "check", "--hosts", str(fleet_inventory), "--workers", "ray", "--json"],
                       capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = json.loads(p.stdout)
    assert [r["ok"] for r in rows] == [True, True, True] and all(r["rtt_ms"] is not None for r in rows)

    before = knob_values(inventory)
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps(STORM))
    p = subprocess.Popen([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--spec", str(spec),
                          "--workers", "ray:2", "--strategy", "random", "--budget", "6", "--verify-repeats", "2",
                          "--confirm-top", "0", "--run-dir", str(tmp_path / "run"), "--yes", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-3000:]
    result = json.loads(stdout)
    assert result["evaluations"] == 6 and set(result["hosts"]) == {"h1", "h2", "h3"}
    # the sessions lived in Ray actor processes, not in the controller: two hosts to an actor,
    # in inventory order (h1 and h2 share one, h3 has the next)
    workers = {n: h["worker"] for n, h in result["hosts"].items()}
    assert all(w["kind"] == "ray" and w["node_id"] for w in workers.values()), workers
    actors = {n: (w["actor_id"], w["pid"]) for n, w in workers.items()}
    assert actors["h1"] == actors["h2"] != actors["h3"], actors
    assert actors["h1"][1] != actors["h3"][1] and p.pid not in {pid for _, pid in actors.values()}, (p.pid, actors)
    # the metric samples the agents streamed crossed the actor boundary into every trial's features
    trials = [json.loads(line) for line in (tmp_path / "run" / "trials.jsonl").read_text().splitlines()]
    assert any(t["samples"] > 0 for t in trials if t["phase"] == "baseline"), [t["samples"] for t in trials]
    assert all(t["features"] for t in trials if t["phase"] == "search")
    assert all(t["worker"] == workers[t["host"]] for t in trials), "every trial records where its host ran"
    assert knob_values(inventory) == before
