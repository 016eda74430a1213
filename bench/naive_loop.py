"""The tuning loop a user would write without tunefleet, as the anchor for bench/scale.py.

paramiko, one connection per host kept open, hosts in parallel threads, and for every evaluation
one SSH exec per `sysctl -w`, one for the benchmark and one per /proc file read. Nothing is
deployed and nothing is journaled: the originals are read first and written back at the end.

    .venv/bin/python bench/naive_loop.py --hosts inventory/local.yml --limit h1,h2,h3 --rounds 10

Prints the wall time per round and per evaluation (amortized over the hosts).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.fleet.inventory import load_inventory

if TYPE_CHECKING:
    from controller.fleet.inventory import HostSpec

KNOB = "net.ipv4.tcp_fin_timeout"
PROC_READS = ("/proc/net/netstat", "/proc/stat")


class NaiveHost:
    """One paramiko client; every step is a fresh exec channel, as `ssh host cmd` in a loop would be."""

    def __init__(self, spec: HostSpec):
        import paramiko

        self.name = spec.name
        self.client = paramiko.SSHClient()
        if spec.known_hosts:
            self.client.load_host_keys(spec.known_hosts)
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.client.connect(spec.host, port=spec.port or 22, username=spec.user or "root",
                            key_filename=spec.key, timeout=10, allow_agent=False, look_for_keys=False)
        self.original = self.run(f"sysctl -n {KNOB}").strip()

    def run(self, command: str) -> str:
        _, stdout, stderr = self.client.exec_command(command, timeout=60)
        out = stdout.read().decode()
        if stdout.channel.recv_exit_status() != 0:
            raise RuntimeError(f"{self.name}: {command}: {stderr.read().decode().strip()}")
        return out

    def evaluate(self, value: int, benchmark: str) -> float:
        self.run(f"sysctl -w {KNOB}={value}")
        out = self.run(benchmark)
        for path in PROC_READS:
            self.run(f"cat {path}")
        return float(out.strip().rsplit("=", 1)[-1])

    def close(self) -> None:
        try:
            self.run(f"sysctl -w {KNOB}={self.original}")
        finally:
            self.client.close()


def naive_run(specs: list, rounds: int, benchmark: str, seed: int = 0) -> float:
    """Connect, then `rounds` evaluations on every host (hosts in parallel); the wall time of the rounds."""
    rng = random.Random(seed)
    with cf.ThreadPoolExecutor(max_workers=len(specs)) as pool:
        hosts = list(pool.map(NaiveHost, specs))
        try:
            started = time.monotonic()
            for _ in range(rounds):
                list(pool.map(lambda h: h.evaluate(rng.randint(10, 60), benchmark), hosts))
            return time.monotonic() - started
        finally:
            list(pool.map(NaiveHost.close, hosts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="inventory/local.yml")
    ap.add_argument("--limit")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--benchmark", default="echo x=1")
    args = ap.parse_args()
    specs = load_inventory(args.hosts).select(args.limit)
    wall = naive_run(specs, args.rounds, args.benchmark)
    per_round = wall / args.rounds * 1000
    print(f"{len(specs)} host(s), {args.rounds} rounds: {per_round:.1f} ms per round = per evaluation per host, "
          f"{per_round / len(specs):.1f} ms amortized over the hosts")


if __name__ == "__main__":
    main()
