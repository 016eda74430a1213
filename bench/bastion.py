"""What a bastion costs: `tunefleet check` on a host reached directly, through one jump host and
through two (the local fleet with BASTION=1).

    .venv/bin/python bench/bastion.py --repeats 5 [--out docs/benchmarks.md]

For each route: the wall time of the whole `tunefleet check` command, the time to connect,
start the agent and get its hello in-process, and the agent round trip over the open channel
(medians of the repeats). With --out, writes them to their section of the benchmarks page.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sections import update_section  # noqa: E402
from controller.fleet.fleet import ConnectOptions, Fleet, round_trip_ms  # noqa: E402
from controller.fleet.inventory import load_inventory  # noqa: E402

SSH_CONFIG = ROOT / "deploy" / ".fleet" / "ssh_config"
ROUTES = (  # label, inventory, host, ssh config
    ("direct (h1)", ROOT / "inventory" / "local.yml", "h1", None),
    ("1 hop (p1 via j1)", ROOT / "inventory" / "local-bastion.yml", "p1", SSH_CONFIG),
    ("2 hops (p2 via j1, j2)", ROOT / "inventory" / "local-bastion.yml", "p2", SSH_CONFIG),
)


def measure(inventory: Path, host: str, ssh_config: Path | None, repeats: int) -> dict:
    walls, connects, rtts = [], [], []
    cli = [sys.executable, "-m", "controller.cli", "check", "--hosts", str(inventory), "--limit", host, "--json"]
    cli += ["--ssh-config", str(ssh_config)] if ssh_config else []
    spec = load_inventory(inventory).select(host)
    for _ in range(repeats):
        t0 = time.monotonic()
        p = subprocess.run(cli, capture_output=True, text=True, timeout=120, cwd=ROOT)
        walls.append(time.monotonic() - t0)
        if p.returncode != 0:
            sys.exit(f"check {host} failed: {p.stderr.strip()}")
        t0 = time.monotonic()
        fleet = Fleet.connect(spec, ConnectOptions(ssh_config=str(ssh_config) if ssh_config else None))
        connects.append(time.monotonic() - t0)
        if fleet.failed:
            sys.exit(f"connect {host} failed: {fleet.failed}")
        with fleet:
            rtts.append(round_trip_ms(fleet.hosts[host], 50))
        json.loads(p.stdout)
    return {"wall_s": statistics.median(walls), "connect_s": statistics.median(connects),
            "rtt_ms": statistics.median(rtts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, help="benchmarks page whose 'bastion' section to rewrite")
    args = ap.parse_args()
    rows = []
    for label, inventory, host, cfg in ROUTES:
        r = measure(inventory, host, cfg, args.repeats)
        rows.append((label, r))
        print(f"{label}: check {r['wall_s']:.2f} s, connect+hello {r['connect_s'] * 1000:.0f} ms, "
              f"agent round trip {r['rtt_ms']:.2f} ms")
    if args.out:
        update_section(args.out, "bastion", _section(rows, args))


def _section(rows, args) -> str:
    table = ["| route | `tunefleet check` (wall) | connect + agent hello | agent round trip |", "|---|---|---|---|"]
    table += [f"| {label} | {r['wall_s']:.2f} s | {r['connect_s'] * 1000:.0f} ms | {r['rtt_ms']:.2f} ms |"
              for label, r in rows]
    return "\n".join([
        "## Through a bastion: ProxyJump cost",
        "",
        f"`tunefleet check` on one host of the local fleet (`BASTION=1 deploy/fleet-up.sh`), reached directly, "
        f"through one jump host and through two; medians of {args.repeats} runs, measured on "
        f"{time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores):",
        "",
        "```",
        f".venv/bin/python bench/bastion.py --repeats {args.repeats} --out {args.out}",
        "```",
        "",
        *table,
        "",
        "Each hop adds one SSH handshake (a key exchange and a public-key authentication) carried inside the "
        "previous connection, plus an `ssh -G` per hop to resolve its options. Once connected, requests to the "
        "agent travel as one more layer of channel framing per hop: the round trip stays well under a millisecond.",
    ])


if __name__ == "__main__":
    main()
