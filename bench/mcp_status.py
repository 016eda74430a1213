"""How soon `tunefleet mcp` answers while a run goes on: start_run, the first run_status after it,
and the progress notifications of watch_run per fleet round, through the MCP SDK's own client over
stdio (the server a child process, as a desktop client starts it).

    .venv/bin/python bench/mcp_status.py --hosts inventory/local.yml --runs 5 [--out docs/benchmarks.md]

Each run is a short connection-storm search (budget 2 rounds of the fleet), followed to its end.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sections import update_section
from controller.fleet.inventory import load_inventory

ROOT = Path(__file__).resolve().parent.parent
STORM = {"workload_name": "connection storm", "reward_metric": "elapsed_ms", "reward_goal": "minimize",
         "benchmark_command": "tunefleet-bench accept-storm --clients 256", "benchmark_timeout": 30,
         "baseline_repeats": 1, "action_space": [{"param": "net.core.somaxconn", "min": 64, "max": 4096}]}


async def one_run(client, hosts: int, seed: int) -> dict:
    budget = 2 * hosts
    t0 = time.monotonic()
    asked = {"spec": STORM, "budget": budget, "strategy": "random", "seed": seed, "verify_repeats": 2, "confirm_top": 0}
    started = (await client.call_tool("start_run", asked)).structured_content
    t1 = time.monotonic()
    status = (await client.call_tool("run_status", {"run_id": started["run_id"]})).structured_content
    t2 = time.monotonic()
    heard: list[str] = []

    async def note(progress, total, message):
        heard.append(message or "")

    since = None
    while status["state"] not in ("finished", "cancelled", "failed"):
        status = (await client.call_tool("watch_run", {"run_id": started["run_id"], "timeout_seconds": 60,
                                                       "since": since}, progress_callback=note)).structured_content
        since = status["events"]
    evaluations = [int(m.group(1)) for m in (re.search(r": search, (\d+)/", h) for h in heard) if m]
    per_round = [sum(1 for n in evaluations if math.ceil(n / hosts) == r) for r in range(1, budget // hosts + 1)]
    return {"start_s": t1 - t0, "status_s": t2 - t1, "state": status["state"], "notifications": len(heard),
            "per_round": per_round, "seconds": time.monotonic() - t0}


async def measure(hosts_file: Path, runs: int) -> list[dict]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    hosts = len(load_inventory(hosts_file).hosts)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PYTHONPATH": str(ROOT), "TUNEFLEET_HISTORY": f"{tmp}/runs.jsonl"}
        server = StdioServerParameters(command=sys.executable, cwd=str(ROOT), env=env,
                                       args=["-m", "controller.cli", "mcp", "--hosts", str(hosts_file.resolve()),
                                             "--runs-dir", f"{tmp}/runs"])
        async with Client(server) as client:
            return [await one_run(client, hosts, seed) for seed in range(runs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=Path, default=Path("inventory/local.yml"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, help="benchmarks page whose 'mcp' section to rewrite")
    args = ap.parse_args()
    rows = anyio.run(measure, args.hosts, args.runs)
    for r in rows:
        print(f"start_run {r['start_s']:.3f} s, first run_status {r['status_s']:.3f} s after it, {r['state']} in "
              f"{r['seconds']:.1f} s, {r['notifications']} notifications, per search round {r['per_round']}")
    if args.out:
        update_section(args.out, "mcp", _section(rows, args))


def _section(rows: list[dict], args) -> str:
    cmd = f".venv/bin/python bench/mcp_status.py --hosts {args.hosts} --runs {args.runs} --out {args.out}"
    status = [r["status_s"] * 1000 for r in rows]
    start = [r["start_s"] * 1000 for r in rows]
    rounds = [n for r in rows for n in r["per_round"]]
    return "\n".join([
        "## MCP server: answers while a run goes on",
        "",
        f"`tunefleet mcp` over stdio, driven by the MCP SDK's own client: {len(rows)} short connection-storm runs "
        f"(2 fleet rounds each) started with start_run, then run_status at once, then watch_run to the end. "
        f"Measured on {time.strftime('%Y-%m-%d')} on the local fleet ({os.cpu_count()} cores shared by every host):",
        "",
        "```",
        cmd,
        "```",
        "",
        "| | median | max |",
        "|---|---|---|",
        f"| start_run answers | {statistics.median(start):.0f} ms | {max(start):.0f} ms |",
        f"| first run_status, after start_run answered | {statistics.median(status):.0f} ms | {max(status):.0f} ms |",
        f"| progress notifications per search round | {statistics.median(rounds):.0f} | {max(rounds)} "
        f"(min {min(rounds)}) |",
        "",
        "start_run checks the spec (no host needed) and hands the run to a thread; run_status reads the run's "
        "status without waiting on it, so it answers while the run connects and measures. The slowest start_run is "
        "a server's first: it waits for the run API (numpy, scipy, the learning stack) to finish loading, which the "
        "server begins when it starts.",
    ])


if __name__ == "__main__":
    main()
