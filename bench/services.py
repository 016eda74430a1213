"""What tunefleet-service's actions cost as run steps: setup, start, restart, reset, stop and
teardown of nginx, Redis and PostgreSQL (scale 5 and 10), each a real agent's `run` request in a
throwaway host (a network namespace with its own hostname), timed from request to reply.

    .venv/bin/python bench/services.py --repeats 5 [--out docs/benchmarks.md]     (root)

restart and reset are what a spec pays before every measured run (untimed by the agent, but
wall time of the run); the reset of PostgreSQL follows a 2 s pgbench run each time, so it has
a history to truncate and dead rows to vacuum. Medians of the repeats; setup is timed once
fresh and once again with the same options.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sections import update_section  # noqa: E402
from controller.fleet.deploy import build_payload  # noqa: E402

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
CASES: tuple[tuple[str, list[str]], ...] = (("nginx", []), ("redis", []), ("postgres", ["--scale", "5"]),
                                           ("postgres", ["--scale", "10"]))
PGBENCH = ["pgbench", "-h", "127.0.0.1", "-p", "15432", "-U", "pgbench", "-c", "4", "-j", "2", "-T", "2", "pgbench"]


class Host:
    """A network namespace with its own hostname and an agent in it, spoken to in JSON lines."""

    def __init__(self, payload: Path, state: Path):
        self.name = f"tfbench-{uuid.uuid4().hex[:8]}"
        self.holder = subprocess.Popen(["unshare", "-n", "-u", "sh", "-c",
                                        f"ip link set lo up && hostname {self.name} && echo ready && exec sleep 3600"],
                                       stdout=subprocess.PIPE)
        assert self.holder.stdout is not None and self.holder.stdout.readline() == b"ready\n"
        ns = f"/proc/{self.holder.pid}/ns/"
        self.agent = subprocess.Popen(["nsenter", f"--net={ns}net", f"--uts={ns}uts", PYTHON, "-I", str(payload),
                                       "--state", str(state)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.agent.stdin is not None and self.agent.stdout is not None
        self.stdin, self.stdout = self.agent.stdin, self.agent.stdout
        self.ids = itertools.count(1)

    def run(self, argv: list[str], timeout: float = 300) -> float:
        """Seconds from the request to its reply; the command must succeed."""
        rid = next(self.ids)
        started = time.monotonic()
        self.stdin.write((json.dumps({"id": rid, "op": "run", "args": {"cmd": argv, "timeout": timeout}})
                                + "\n").encode())
        self.stdin.flush()
        while True:
            reply = json.loads(self.stdout.readline())
            if reply.get("id") == rid and "event" not in reply:
                break
        took = time.monotonic() - started
        if not reply["ok"] or reply["result"]["exit_code"] != 0:
            sys.exit(f"{' '.join(argv)} failed: {reply}")
        return took

    def close(self):
        self.stdin.close()
        self.agent.wait(60)
        self.holder.kill()
        self.holder.wait(10)


def measure(host: Host, kind: str, options: list[str], repeats: int) -> dict:
    service = ["tunefleet-service", kind]
    row: dict[str, Any] = {"setup_s": host.run(service + ["setup"] + options),
                           "setup_again_s": host.run(service + ["setup"] + options),
                           "start_s": host.run(service + ["start"])}
    restarts, resets = [], []
    for _ in range(repeats):
        restarts.append(host.run(service + ["restart"]))
        if kind != "nginx":
            if kind == "postgres":
                host.run(PGBENCH)
            resets.append(host.run(service + ["reset"]))
    row["restart_s"] = statistics.median(restarts)
    row["reset_s"] = statistics.median(resets) if resets else None
    row["stop_s"] = host.run(service + ["stop"])
    row["teardown_s"] = host.run(service + ["teardown"])
    return row


def markdown(rows: list[dict], repeats: int) -> str:
    def s(v):
        return "-" if v is None else f"{v:.2f} s"
    lines = ["## tunefleet-service: what a server's steps cost", "",
             f"Each action is a `run` request to a real agent in a throwaway host (network namespace and hostname), "
             f"timed from request to reply (the helper's Python start included); restart and reset are medians of "
             f"{repeats}, the PostgreSQL reset each after a 2 s pgbench run. Measured on {time.strftime('%Y-%m-%d')} "
             f"(2 cores, 1-minute load average {os.getloadavg()[0]:.1f} at the end):", "",
             "```", f".venv/bin/python bench/services.py --repeats {repeats} --out docs/benchmarks.md", "```", "",
             "| server | setup | setup again | start | restart | reset | stop | teardown |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {s(r['setup_s'])} | {s(r['setup_again_s'])} | {s(r['start_s'])} | "
                     f"{s(r['restart_s'])} | {s(r['reset_s'])} | {s(r['stop_s'])} | {s(r['teardown_s'])} |")
    lines += ["", "PostgreSQL's setup is initdb and `pgbench -i` (server-side rows); its restart is a fast shutdown "
              "(a checkpoint) and a start; its reset is TRUNCATE pgbench_history, VACUUM ANALYZE and CHECKPOINT."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the table to its section of this page")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp) / "agent.pyz"
        payload.write_bytes(build_payload().data)
        for kind, options in CASES:
            host = Host(payload, Path(tmp) / f"state-{len(rows)}")
            try:
                row = measure(host, kind, options, args.repeats)
            finally:
                host.close()
            row["case"] = kind + (f" (scale {options[1]})" if options else "")
            rows.append(row)
            print(json.dumps(row), flush=True)
    text = markdown(rows, args.repeats)
    print(text)
    if args.out:
        update_section(args.out, "services", text)


if __name__ == "__main__":
    main()
