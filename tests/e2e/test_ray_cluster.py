"""tunefleet on a multi-node Ray cluster (deploy/ray-up.sh): a head and two worker nodes in their
own network namespaces, each reaching only its part of the local fleet. Each host's actor must run
on the node inside its network (inventory placement), and a worker node killed mid-run must leave
its host restored and the run finished without it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.e2e.test_tuning import STORM, knob_values

TUNEFLEET = [sys.executable, "-m", "controller.cli"]
# deploy/ray-up.sh's default: worker node i at 10.87.77.(200+i) offers the resource named first
NODES = {"net-a": "10.87.77.201", "net-b": "10.87.77.202"}
PLACEMENT = {"h1": "net-a", "h2": "net-a", "h3": "net-b"}


@pytest.fixture(scope="module")
def ray_address(fleet_inventory):
    up = subprocess.run([str(ROOT / "deploy" / "ray-up.sh")], capture_output=True, text=True, timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr[-3000:]
        address = up.stdout.strip().splitlines()[-1]
        assert address.startswith("RAY_ADDRESS="), up.stdout
        yield address.split("=", 1)[1]
    finally:
        subprocess.run([str(ROOT / "deploy" / "ray-down.sh")], capture_output=True, timeout=120)


def _inventory(fleet_inventory, tmp_path, placement: dict[str, str]):
    """inventory/local.yml with a Ray resource per host."""
    import yaml

    data = yaml.safe_load(fleet_inventory.read_text())
    data["hosts"] = {n: {**data["hosts"][n], "ray_resource": r} for n, r in placement.items()}
    data.pop("groups", None)
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _env(tmp_path, address: str) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": address}


def _kill_namespace(ns: str) -> None:
    """The whole Ray node: every process in its network namespace, at once."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["kill", "-9", *pids], check=False)


def test_a_resource_no_node_offers_is_one_clear_error(ray_address, fleet_inventory, tmp_path):
    """Runs first: the next test kills net-b's node, and the cluster then offers net-a alone."""
    hosts = _inventory(fleet_inventory, tmp_path, {"h1": "net-a", "h2": "net-nowhere"})
    p = subprocess.run([*TUNEFLEET, "check", "--hosts", str(hosts), "--workers", "ray"],
                       capture_output=True, text=True, timeout=180, env=_env(tmp_path, ray_address))
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: h2: no Ray node offers the resource 'net-nowhere' (tunefleet_ray_resource); "
                      "the cluster offers: net-a, net-b"], p.stderr
    assert "Traceback" not in p.stderr


def test_actors_run_where_their_hosts_are_and_a_lost_node_leaves_its_host_restored(
        ray_address, fleet_inventory, inventory, tmp_path):
    hosts = _inventory(fleet_inventory, tmp_path, PLACEMENT)
    before = knob_values(inventory)
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps(STORM))
    run_dir = tmp_path / "run"
    p = subprocess.Popen([*TUNEFLEET, "run", "--hosts", str(hosts), "--spec", str(spec), "--workers", "ray",
                          "--strategy", "random", "--budget", "18", "--verify-repeats", "2", "--confirm-top", "0",
                          "--run-dir", str(run_dir), "--yes", "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path, ray_address))
    try:
        # kill net-b's node once h3 has been searched on: mid-run, between or during its evaluations
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and p.poll() is None:
            trials = run_dir / "trials.jsonl"
            lines = trials.read_text().splitlines() if trials.exists() else []
            if any(json.loads(t)["host"] == "h3" and json.loads(t)["phase"] == "search" for t in lines):
                break
            time.sleep(0.2)
        assert p.poll() is None, "the run ended before the node could be killed"
        _kill_namespace("tf-ray2")
        stdout, stderr = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, stderr[-3000:]
    result = json.loads(stdout)

    # every host's actor ran on the node offering its resource, as result and trials record
    placed = {n: h["worker"]["node_ip"] for n, h in result["hosts"].items()}
    assert placed == {n: NODES[r] for n, r in PLACEMENT.items()}, placed
    # hosts share an actor only with hosts that ask for the same resource
    actors = {n: h["worker"]["actor_id"] for n, h in result["hosts"].items()}
    assert actors["h1"] == actors["h2"] != actors["h3"], actors
    trials = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
    assert {(t["host"], t["worker"]["node_ip"]) for t in trials} == set(placed.items())

    # the lost node's host was dropped, the others finished the run and were verified
    assert set(result["dropped"]) == {"h3"} and "lost" in result["dropped"]["h3"], result["dropped"]
    assert result["evaluations"] == 18 and result["verification"] is not None
    assert "verification" in result["hosts"]["h1"] and "verification" in result["hosts"]["h2"]

    # h3's agent restored the host by itself when its channel closed; the others on bye
    for _ in range(50):
        if knob_values(inventory) == before:
            break
        time.sleep(0.2)
    assert knob_values(inventory) == before
