"""What a bastion costs: `tunefleet check` on a host reached directly, through one jump host and
through two (the local fleet with BASTION=1).

    .venv/bin/python bench/bastion.py --repeats 5 [--out docs/benchmarks.md]

For each route: the wall time of the whole `tunefleet check` command, the time to connect,
start the agent and get its hello in-process, and the agent round trip over the open channel
(medians of the repeats). All three go through one inventory in tunefleet's own format and the
bastion's ssh config, so only the route differs. With --out, writes them to their section of
the benchmarks page.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sections import update_section  # noqa: E402
from controller.fleet.fleet import ConnectOptions, Fleet, round_trip_ms  # noqa: E402
from controller.fleet.inventory import load_inventory  # noqa: E402

FLEET = ROOT / "deploy" / ".fleet"
SSH_CONFIG = FLEET / "ssh_config"
ROUTES = (("direct (h1)", "h1"), ("1 hop (p1 via j1)", "p1"), ("2 hops (p2 via j1, j2)", "p2"))
INVENTORY = f"""defaults: {{user: root, key: {FLEET}/id_ed25519, known_hosts: {FLEET}/known_hosts}}
hosts: {{h1: {{host: 10.87.77.11}}, p1: {{host: tf-p1}}, p2: {{host: tf-p2}}}}
"""


def measure(inventory: Path, host: str, repeats: int) -> dict:
    walls, connects, rtts = [], [], []
    cli = [sys.executable, "-m", "controller.cli", "check", "--hosts", str(inventory), "--limit", host, "--json",
           "--ssh-config", str(SSH_CONFIG)]
    spec = load_inventory(inventory).select(host)
    for _ in range(repeats):
        t0 = time.monotonic()
        p = subprocess.run(cli, capture_output=True, text=True, timeout=120, cwd=ROOT)
        walls.append(time.monotonic() - t0)
        if p.returncode != 0:
            sys.exit(f"check {host} failed: {p.stderr.strip()}")
        t0 = time.monotonic()
        fleet = Fleet.connect(spec, ConnectOptions(ssh_config=str(SSH_CONFIG)))
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
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "bastion.yml"
        inventory.write_text(INVENTORY)
        for label, host in ROUTES:
            rows.append((label, measure(inventory, host, args.repeats)))
    for label, r in rows:
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
        f"{time.strftime('%Y-%m-%d')} ({os.cpu_count()} cores, 1-minute load average {os.getloadavg()[0]:.1f} "
        f"at the end):",
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
