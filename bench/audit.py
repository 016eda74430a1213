"""How long `tunefleet audit` takes to answer for a fleet, end to end as a user runs it (a new
process: Python start-up, inventory, one SSH connection and one `python3 -` per host, the JSON):
the wall time of each of --repeats runs, and the audit's own figure for reading the hosts.

    .venv/bin/python bench/audit.py --hosts inventory/local.yml [--spec S] [--repeats 10]

Target (issue 22): <= 2 s for 3 hosts. Prints a Markdown table row; writes nothing on any host.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description="Time tunefleet audit on a fleet (reads only).")
    parser.add_argument("--hosts", required=True, help="inventory")
    parser.add_argument("--spec", help="audit this spec's knobs (default: every catalog knob)")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    command = [sys.executable, "-m", "controller.cli", "audit", "--hosts", args.hosts, "--json"]
    if args.spec:
        command += ["--spec", args.spec]
    walls, reads, hosts, knobs = [], [], 0, 0
    for _ in range(args.repeats):
        started = time.perf_counter()
        p = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        walls.append(time.perf_counter() - started)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        report = json.loads(p.stdout)
        reads.append(report["elapsed_s"])
        hosts = len(report["hosts"])
        knobs = max(len(h.get("knobs", {})) for h in report["hosts"].values())
    print("| hosts | knobs per host | wall time, median (max) | reading the hosts, median (max) |")
    print("|---|---|---|---|")
    print(f"| {hosts} | {knobs} | {statistics.median(walls):.2f} s ({max(walls):.2f} s) | "
          f"{statistics.median(reads):.2f} s ({max(reads):.2f} s) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
