"""`tunefleet mcp` driven by the MCP SDK's own client over stdio against the local fleet, as an AI
agent would: plan, start a run, follow it to the end and export it; cancel a run mid-search and
find every host back on its original values; a hostile spec refused before anything connects.

Set TUNEFLEET_MCP_TRANSCRIPT=FOLDER to keep each test's session (requests, answers, progress
notifications with their times) there as JSON: docs/mcp.md quotes them.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import anyio
import pytest

from controller.result import RunResult
from tests.conftest import FLEET
from tests.mcp_session import serving

pytestmark = pytest.mark.fleet

KNOBS = ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog")
GOAL = "a burst of new connections at once (connection storm)"
OVER = ("finished", "cancelled", "failed")
# Slow enough that a cancel lands mid-search: every somaxconn in the range is below the burst of 256, so
# every evaluation pays at least one 1 s SYN retransmit, and 60 of them take far longer than a round.
SLOW_STORM = {"workload_name": "connection storm", "reward_metric": "elapsed_ms", "reward_goal": "minimize",
              "benchmark_command": "tunefleet-bench accept-storm --clients 256", "benchmark_timeout": 30,
              "baseline_repeats": 1,
              "action_space": [{"param": "net.core.somaxconn", "min": 64, "max": 200},
                               {"param": "net.ipv4.tcp_max_syn_backlog", "min": 64, "max": 4096}]}


def proc_sys(inventory) -> dict[str, dict[str, str]]:
    """Each host's knob values, read from /proc/sys inside its network namespace (not through tunefleet)."""
    return {name: {k: subprocess.run(["ip", "netns", "exec", FLEET.ns(name), "cat", "/proc/sys/" + k.replace(".", "/")],
                                     capture_output=True, text=True, check=True).stdout.strip() for k in KNOBS}
            for name in inventory.hosts}


def evaluations_seen(calls) -> list[tuple[int, int]]:
    """(evaluations, budget) of every progress notification sent during the search."""
    out = []
    for call in calls:
        for p in call.progress:
            m = re.search(r": search, (\d+)/(\d+) evaluations", p["message"] or "")
            if m:
                out.append((int(m.group(1)), int(m.group(2))))
    return out


def keep(session, name: str) -> None:
    folder = os.environ.get("TUNEFLEET_MCP_TRANSCRIPT")
    if folder:
        session.save(Path(folder) / f"{name}.json")


def test_plan_start_follow_to_the_end_and_export(fleet_inventory, inventory, tmp_path):
    before = proc_sys(inventory)
    hosts = len(inventory.hosts)

    async def session():
        async with serving("--hosts", str(fleet_inventory), runs=tmp_path / "runs") as s:
            planned = await s.ok("plan", goal=GOAL)
            started = await s.ok("start_run", spec=planned["spec"], budget=6, strategy="random", seed=1)
            first = await s.call("run_status", run_id=started["run_id"])
            status, since = first.answer, None
            while status["state"] not in OVER:
                status = await s.ok("watch_run", run_id=started["run_id"], timeout_seconds=60, since=since)
                since = status["events"]
            final = await s.ok("run_status", run_id=started["run_id"])
            exported = await s.ok("export", run_id=started["run_id"], format="sysctl.d")
            shown = await s.ok("show", run_id=started["run_id"])
            report = await s.ok("report", run_id=started["run_id"])
            keep(s, "plan-run-export")
            return s, planned, started, first, final, exported, shown, report

    s, planned, started, first, final, exported, shown, report = anyio.run(session)
    assert planned["workload"] == "connection-storm" and planned["benchmark"]["origin"] == "builtin"
    assert first.error is None and first.answer["run_id"] == started["run_id"]
    print(f"\nstart_run answered in {s.calls[1].seconds:.3f} s; the first run_status {first.seconds:.3f} s after it")
    assert final["state"] == "finished", final
    assert final["evaluations"] == 6 and final["budget"] == 6
    v = final["verification"]
    assert final["success"] and v["significant"] and v["ci_low_pct"] > 0, final  # 1 s retransmits vs none
    assert final["restore"]["clean"] and set(final["restore"]["hosts"]) == set(inventory.hosts)
    # at least one progress notification in every fleet round of the search
    seen = evaluations_seen(s.calls)
    rounds = math.ceil(6 / hosts)
    assert {math.ceil(n / hosts) for n, _ in seen if n} >= set(range(1, rounds + 1)), seen
    print(f"progress notifications: {sum(len(c.progress) for c in s.calls)} in all, {len(seen)} during the "
          f"search ({rounds} rounds of {hosts} hosts)")
    best = shown["best_config"]
    assert all(f"{k} = {val}\n" in exported["text"] for k, val in best.items())
    assert int(best["net.core.somaxconn"]) > 256  # the burst fits the accept queue
    assert RunResult.load(final["run_dir"]).success
    assert report["report_html"].endswith("report.html") and os.path.isfile(report["report_html"])
    assert proc_sys(inventory) == before


def test_cancel_mid_search_restores_every_host_and_marks_the_folder_cancelled(fleet_inventory, inventory, tmp_path):
    before = proc_sys(inventory)

    async def session():
        async with serving("--hosts", str(fleet_inventory), runs=tmp_path / "runs") as s:
            started = await s.ok("start_run", spec=SLOW_STORM, budget=60, strategy="random", seed=3, confirm_top=0)
            status = await s.ok("run_status", run_id=started["run_id"])
            while status["state"] not in OVER and not (status["phase"] == "search" and status["evaluations"] >= 3):
                await anyio.sleep(0.2)
                status = await s.ok("run_status", run_id=started["run_id"])
            during = proc_sys(inventory)
            cancelled = await s.ok("cancel_run", run_id=started["run_id"])
            shown = await s.ok("show", run_id=started["run_id"])
            keep(s, "cancel")
            print(f"\ncancel_run answered in {s.calls[-2].seconds:.2f} s, every host restored")
            return status, during, cancelled, shown

    status, during, cancelled, shown = anyio.run(session)
    assert status["phase"] == "search" and status["state"] == "running", status
    assert during != before  # candidates were applied when the cancel came
    assert cancelled["state"] == "cancelled", cancelled
    assert 3 <= cancelled["evaluations"] < 60
    restore = cancelled["restore"]
    assert restore["clean"] and set(restore["hosts"]) == set(inventory.hosts)
    for name, report in restore["hosts"].items():
        assert report["error"] is None and not report["left"]
        for knob, value in report["restored"].items():
            assert value == before[name][knob]  # what it wrote back is the original
    changed = {(n, k) for n in before for k in KNOBS if during[n][k] != before[n][k]}
    assert changed <= {(n, k) for n, r in restore["hosts"].items() for k in r["restored"]}
    assert proc_sys(inventory) == before
    assert RunResult.load(cancelled["run_dir"]).status == "cancelled" and shown["status"] == "cancelled"


def test_a_hostile_spec_never_reaches_a_host(fleet_inventory, inventory, tmp_path):
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("still here")
    hostile = {**SLOW_STORM, "benchmark_command": f"rm -rf {sentinel}"}
    denied = {**SLOW_STORM, "action_space": [{"param": "kernel.randomize_va_space", "min": 0, "max": 2}]}
    before = proc_sys(inventory)

    async def session():
        async with serving("--hosts", str(fleet_inventory), runs=tmp_path / "runs") as s:
            calls = [await s.call("start_run", spec=spec, budget=3) for spec in (hostile, denied)]
            keep(s, "hostile")
            return calls

    for call in anyio.run(session):
        assert call.error and call.error.startswith("the spec for 'connection storm' cannot run as is"), call.error
    assert sentinel.read_text() == "still here"
    assert not (tmp_path / "runs").exists() and proc_sys(inventory) == before


def test_a_client_that_leaves_mid_run_leaves_every_host_restored(fleet_inventory, inventory, tmp_path):
    """The client closes the connection mid-search (a desktop client quits): the server cancels what it
    still runs and closes the fleet before it exits."""
    before = proc_sys(inventory)

    async def session():
        async with serving("--hosts", str(fleet_inventory), runs=tmp_path / "runs") as s:
            started = await s.ok("start_run", spec=SLOW_STORM, budget=60, strategy="random", seed=3)
            status = await s.ok("run_status", run_id=started["run_id"])
            while status["state"] not in OVER and not (status["phase"] == "search" and status["evaluations"] >= 3):
                await anyio.sleep(0.2)
                status = await s.ok("run_status", run_id=started["run_id"])
            return status, proc_sys(inventory)

    status, during = anyio.run(session)  # leaving the block closes stdin; the SDK waits, then kills
    after = proc_sys(inventory)
    assert status["state"] == "running" and during != before
    assert after == before
    folder = next((tmp_path / "runs").iterdir())
    assert RunResult.load(folder).status == "cancelled"


def test_start_run_plans_a_goal_as_tunefleet_run_does(fleet_inventory, inventory, tmp_path):
    """A goal instead of a spec: the run plans it in the background (the built-in catalog here, as
    `tunefleet run GOAL` without a model endpoint), and its plan.json says who wrote the benchmark."""
    before = proc_sys(inventory)

    async def session():
        async with serving("--hosts", str(fleet_inventory), "--model", "builtin", runs=tmp_path / "runs") as s:
            started = await s.ok("start_run", goal=GOAL, budget=3, strategy="random", verify_repeats=2, confirm_top=0)
            first = await s.ok("run_status", run_id=started["run_id"])
            status, since = first, None
            while status["state"] not in OVER:
                status = await s.ok("watch_run", run_id=started["run_id"], timeout_seconds=60, since=since)
                since = status["events"]
            return started, first, status

    started, first, status = anyio.run(session)
    assert started["state"] == "planning" and started["budget"] == 3
    assert first["state"] in ("planning", "connecting", "checking", "running")
    assert status["state"] == "finished" and status["evaluations"] == 3, status
    plan = json.loads((Path(status["run_dir"]) / "plan.json").read_text())
    assert plan["workload"] == "connection-storm" and plan["benchmark"]["origin"] == "builtin"
    assert proc_sys(inventory) == before
