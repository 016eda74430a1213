"""How exact and how fast the emulated link (agent ops link_up / link_down) is on this machine.

    sudo .venv/bin/python bench/link.py [--seconds 4] [--pings 20] [--delays 20,50,100]
                                        [--rates 50,100,200,500] [--capacity-delays 0,50]

Two throwaway network namespaces joined by a veth pair (rp_filter=1 in both, socket buffers up
to 64 MiB so the window never is the limit); the agent runs in the first through the local
transport, the benchmark's sink in the second. For every delay and rate: the ICMP echo round
trip on the idle link (median and 90th percentile of --pings), the remote stream's throughput
(receiver-counted, one timed round after a warm-up) against the most a full-size frame can carry
at that rate (1448 of 1514 bytes: 95.6 %), the forwarder's CPU (seconds per second of the run,
one core = 100 %) and its drops. Then the capacity: the same stream with the rate set far above
what the forwarder can do (10 Gbit/s), at each --capacity-delays. Prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controller.fleet.fleet import start_agent  # noqa: E402
from controller.fleet.transport import LocalTransport  # noqa: E402
from tests.e2e.test_link import PING  # noqa: E402

A_ADDR, PEER = "10.66.0.1", "10.66.0.2"
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
BUFFERS = "4096 131072 67108864"
GOODPUT = 1448 / 1514


def sh(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=60).stdout


class Namespaces:
    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"tf-bench-a-{tag}", f"tf-bench-b-{tag}"

    def __enter__(self):
        for ns in (self.a, self.b):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.a, "link", "add", "tfa", "type", "veth", "peer", "name", "tfb", "netns", self.b)
        for ns, dev, addr in ((self.a, "tfa", A_ADDR), (self.b, "tfb", PEER)):
            sh("ip", "-n", ns, "addr", "add", addr + "/24", "dev", dev)
            for setting in (f"net.ipv6.conf.{dev}.disable_ipv6=1", "net.ipv4.conf.all.rp_filter=1",
                            f"net.ipv4.conf.{dev}.rp_filter=1", f"net.ipv4.tcp_rmem={BUFFERS}",
                            f"net.ipv4.tcp_wmem={BUFFERS}"):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", setting)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        return self

    def __exit__(self, *_):
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "delete", ns], check=False)


UDP_SEND = r"""
import socket, sys, time
address, mbit, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload, per_s = b"\0" * 1472, mbit * 1e6 / (1514 * 8)  # 1472 bytes of UDP: a 1514-byte frame
start = time.monotonic()
sent = 0
while time.monotonic() - start < seconds:
    due = int((time.monotonic() - start) * per_s)
    while sent < due:
        try:
            sock.sendto(payload, (address, 5202))
        except OSError:
            pass
        sent += 1
    time.sleep(0.0005)
"""

UDP_RECEIVE = r"""
import json, socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 25)
sock.bind((sys.argv[1], 5202))
sock.settimeout(float(sys.argv[2]))
print("ready", flush=True)
times = []
try:
    while len(times) < 10000000:
        sock.recv(2048)
        times.append(time.monotonic())
        sock.settimeout(1.0)
except socket.timeout:
    pass
print(json.dumps({"n": len(times), "first": times[0] if times else 0, "last": times[-1] if times else 0}))
"""


def ping(ns: Namespaces, count: int) -> list[float]:
    rtts = json.loads(sh("ip", "netns", "exec", ns.a, PYTHON, "-c", PING, PEER, str(count)))
    return sorted(r for r in rtts if r is not None)


def udp_rate(ns: Namespaces, offered_mbit: float, seconds: float, delay_ms: float) -> float:
    """Mbit/s of 1514-byte frames arriving at the peer while more than the rate is offered:
    the spacing the link gives them, measured from the first arrival to the last."""
    receiver = subprocess.Popen(["ip", "netns", "exec", ns.b, PYTHON, "-c", UDP_RECEIVE, PEER,
                                 str(seconds + delay_ms / 1000 + 5)], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    sh("ip", "netns", "exec", ns.a, PYTHON, "-c", UDP_SEND, PEER, str(offered_mbit), str(seconds))
    got = json.loads(receiver.stdout.readline())
    receiver.wait(30)
    receiver.stdout.close()
    if got["n"] < 2:
        return 0.0
    return (got["n"] - 1) * 1514 * 8 / (got["last"] - got["first"]) / 1e6


def stream(host, seconds: float) -> float:
    result = host.request("run", {"cmd": f"tunefleet-bench stream --to {PEER}:5201 --seconds {seconds} --rounds 1",
                                  "timeout": 4 * seconds + 60}, timeout=4 * seconds + 90)
    values = dict(line.split(" = ") for line in result["stdout_tail"].splitlines() if " = " in line)
    if "throughput_mbit_s" not in values:
        sys.exit(f"stream failed: {result['stdout_tail']} {result['stderr_tail']}")
    return float(values["throughput_mbit_s"])


def veth_dropped(ns: Namespaces) -> int:
    return int(sh("ip", "netns", "exec", ns.a, "cat", "/sys/class/net/tfa/statistics/tx_dropped"))


def one(host, ns: Namespaces, delay: float, rate: float, args) -> dict:
    """One setting, two links: idle round trips and a UDP flood at 1.2 times the rate (the
    forwarder's exactness and its CPU per frame), then a TCP stream (its drops)."""
    limit = int(2 * rate * 1e6 * (delay / 1000.0 + 0.01) / 8 / 1514) + 1000  # twice the BDP
    settings = {"peer": PEER, "delay_ms": delay, "rate_mbit": rate, "limit": limit}
    host.request("link_up", settings)
    rtts = ping(ns, args.pings)
    udp = udp_rate(ns, min(1.2 * rate, args.offer_max), args.udp_seconds, delay)
    flood = host.request("link_down")["counters"]
    host.request("link_up", settings)
    dropped = veth_dropped(ns)
    mbit = stream(host, args.seconds)
    tcp = host.request("link_down")["counters"]
    us = 1e6 * flood["cpu_s"] / max(1, flood["frames_in"])
    return {"delay": delay, "rate": rate, "rtt_med": rtts[len(rtts) // 2] if rtts else None,
            "rtt_p90": rtts[int(len(rtts) * 0.9) - 1] if rtts else None, "udp": udp, "mbit": mbit,
            "us_per_frame": us, "core_pct": us * min(rate, udp) * 1e6 / (1514 * 8) / 1e4,
            "queue_drops": tcp["queue_drops"], "overruns": (tcp["overruns"] or 0) + tcp["send_errors"],
            "veth_drops": veth_dropped(ns) - dropped, "flood_overruns": flood["overruns"] or 0}


def table(rows: list[dict]) -> str:
    lines = ["| delay ms | rate Mbit/s | RTT median ms | RTT p90 ms | UDP at the peer Mbit/s | TCP stream Mbit/s "
             "| TCP of max payload | TCP queue drops | TCP overruns | CPU us/frame | CPU at that rate |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        unlimited = r["rate"] >= 10000
        rate = "unlimited" if unlimited else f"{r['rate']:g}"
        share = "" if unlimited else f"{100 * r['mbit'] / (r['rate'] * GOODPUT):.1f} %"
        udp = f"{r['udp']:.1f}" + ("" if unlimited else f" ({100 * r['udp'] / r['rate']:.1f} %)")
        rtt = (f"{r['rtt_med']:.2f}", f"{r['rtt_p90']:.2f}") if r["rtt_med"] is not None else ("-", "-")
        lines.append(f"| {r['delay']:g} | {rate} | {rtt[0]} | {rtt[1]} | {udp} | {r['mbit']:.1f} | {share} | "
                     f"{r['queue_drops']} | {r['overruns'] + r['veth_drops']} | {r['us_per_frame']:.1f} | "
                     f"{r['core_pct']:.0f} % |")
    return "\n".join(lines)


def numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each timed stream round")
    parser.add_argument("--pings", type=int, default=20, help="ICMP echoes per link")
    parser.add_argument("--udp-seconds", type=float, default=1.5, help="length of the UDP flood")
    parser.add_argument("--offer-max", type=float, default=2000.0, help="most Mbit/s the UDP sender offers")
    parser.add_argument("--delays", type=numbers, default=[20, 50, 100], help="delays in ms, comma-separated")
    parser.add_argument("--rates", type=numbers, default=[50, 100, 200, 500], help="rates in Mbit/s")
    parser.add_argument("--capacity-delays", type=numbers, default=[0, 50], help="delays for the capacity runs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/link.py needs root (network namespaces)")
    rows = []
    with Namespaces() as ns, tempfile.TemporaryDirectory() as home:
        transport = LocalTransport("bench", env={"HOME": home, "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin")},
                                   wrap=["ip", "netns", "exec", ns.a])
        sink = subprocess.Popen(["ip", "netns", "exec", ns.b, PYTHON, "-I", str(ROOT / "node_agent"), "bench", "sink",
                                 "--port", "5201", "--bind", PEER], stdout=subprocess.PIPE)
        assert sink.stdout is not None
        sink.stdout.readline()
        host = start_agent("bench", transport, sudo=False)
        try:
            for delay in args.delays:
                for rate in args.rates:
                    rows.append(one(host, ns, delay, rate, args))
                    print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
            for delay in args.capacity_delays:
                rows.append(one(host, ns, delay, 10000.0, args))
                print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        finally:
            host.close()
            sink.terminate()
            sink.wait(10)
    print(table(rows))


if __name__ == "__main__":
    main()
