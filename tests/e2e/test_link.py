"""The emulated link (agent ops link_up / link_down) between two throwaway network namespaces.

The agent runs in namespace A (the `netns` fixture) through the local transport; namespace B
holds the peer, joined to A by a veth pair. Both have strict reverse-path filtering
(rp_filter=1, as RHEL and openEuler ship), so a design that routes around it would fail here.
Every figure is measured: ICMP echo round trips, a real TCP stream to the benchmark's sink, and
the forwarder's own counters; and after every way the link can end, the namespace is checked
for what the link added (TAP device, qdisc, filter, forwarder process, journal) and for any
change to its rules and routes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from controller.errors import AgentError
from controller.fleet.fleet import start_agent

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
A_ADDR, PEER, OTHER = "10.66.0.1", "10.66.0.2", "10.66.0.3"  # OTHER: B's second address, not the peer
DEV = "tfa"

PING = r"""
import json, os, socket, struct, sys, time
def checksum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
address, count = sys.argv[1], int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.settimeout(2.0)
ident, rtts = os.getpid() & 0xffff, []
for seq in range(count):
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"tunefleet-link!!"
    start = time.monotonic()
    sock.sendto(body[:2] + struct.pack("!H", checksum(body)) + body[4:], (address, 0))
    rtt = None
    try:
        while rtt is None:
            data = sock.recv(2048)
            head = (data[0] & 15) * 4
            kind, _, _, i, s = struct.unpack("!BBHHH", data[head:head + 8])
            if kind == 0 and i == ident and s == seq:
                rtt = (time.monotonic() - start) * 1000.0
    except socket.timeout:
        pass
    rtts.append(rtt)
    time.sleep(0.02)
print(json.dumps(rtts))
"""


def sh(*argv: str, check: bool = True) -> str:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {p.stderr}")
    return p.stdout


class Pair:
    """Namespace A (the agent's) and B (the peer), a veth between them, rp_filter=1 in both."""

    def __init__(self, a: str, b: str, transport, home: Path):
        self.a, self.b, self.transport, self.home = a, b, transport, home
        self.state = home / ".tunefleet"

    def in_a(self, *argv: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.a, *argv, check=check)

    def ping(self, address: str, count: int = 10) -> list:
        return json.loads(self.in_a(PYTHON, "-c", PING, address, str(count)))

    def routing(self) -> str:
        """Every rule and route of A: the link must leave them as they were."""
        return "".join(self.in_a("ip", family, what, *more) for family in ("-4", "-6")
                       for what, *more in (("rule",), ("route", "show", "table", "all")))

    def leftovers(self, tap: str) -> list[str]:
        """What the link added that is still there in A (empty when the link is gone)."""
        left = []
        if tap in self.in_a("ip", "-o", "link", "show"):
            left.append(f"device {tap}")
        if "clsact" in self.in_a("tc", "qdisc", "show", "dev", DEV):
            left.append("qdisc clsact")
        if self.in_a("tc", "filter", "show", "dev", DEV, "egress").strip():
            left.append("egress filter")
        left += [f"process {pid}" for pid in forwarders(tap)]
        if (self.state / "link.json").exists():
            left.append("link.json")
        return left

    def agent(self):
        return start_agent("local", self.transport, sudo=False)


def forwarders(tap: str) -> list[int]:
    """Live processes forwarding for this TAP device (zombies are gone already)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"link-forward" in cmdline and tap.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


@pytest.fixture()
def pair(netns, local_transport, tmp_path):
    b = netns.replace("tf-test-", "tf-peer-")
    subprocess.run(["ip", "netns", "add", b], check=True)
    try:
        sh("ip", "-n", b, "link", "set", "lo", "up")
        sh("ip", "-n", netns, "link", "add", DEV, "type", "veth", "peer", "name", "tfb", "netns", b)
        sh("ip", "-n", netns, "addr", "add", A_ADDR + "/24", "dev", DEV)
        sh("ip", "-n", b, "addr", "add", PEER + "/24", "dev", "tfb")
        sh("ip", "-n", b, "addr", "add", OTHER + "/24", "dev", "tfb")
        for ns, dev in ((netns, DEV), (b, "tfb")):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            sh("ip", "-n", ns, "link", "set", dev, "up")
            for conf in ("all", "default", dev):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter=1")
        yield Pair(netns, b, local_transport, tmp_path)
    finally:
        subprocess.run(["ip", "netns", "delete", b], check=False)


@pytest.fixture()
def sink(pair):
    """The benchmark's sink in B, stopped with SIGTERM at the end (it must exit 0 on it)."""
    proc = subprocess.Popen(["ip", "netns", "exec", pair.b, PYTHON, "-I", str(ROOT / "node_agent"),
                             "bench", "sink", "--port", "5201", "--bind", PEER],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().decode().strip() == f"listening = {PEER}:5201", proc.stderr.read()
    yield f"{PEER}:5201"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    proc.stdout.close()
    proc.stderr.close()


def stream(host, to: str, seconds: float, omit: float = 0.0) -> dict:
    """One timed round (after the warm-up) of the remote stream, run by the agent in A."""
    result = host.request("run", {"cmd": f"tunefleet-bench stream --to {to} --seconds {seconds} --omit {omit} "
                                         "--rounds 1", "timeout": 4 * (seconds + omit) + 30},
                          timeout=4 * (seconds + omit) + 60)
    assert result["exit_code"] == 0, result
    return dict(line.split(" = ") for line in result["stdout_tail"].splitlines() if " = " in line)


def median(values: list) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def link_up(host, **settings) -> dict:
    return host.request("link_up", {"peer": PEER, **settings})


# -- what the link does -------------------------------------------------------------------------

def test_link_delays_traffic_to_the_peer_and_nothing_else(pair):
    host = pair.agent()
    try:
        routing = pair.routing()
        assert max(pair.ping(PEER, 5)) < 10
        up = link_up(host, delay_ms=50, rate_mbit=20)
        assert up["peer"] == PEER and up["device"] == DEV and up["qdisc_added"] is True
        assert up["in_flight_frames"] == 82  # 20 Mbit/s for 50 ms, in 1514-byte frames
        to_peer, to_other, to_self = pair.ping(PEER), pair.ping(OTHER), pair.ping(A_ADDR)
        assert None not in to_peer + to_other + to_self  # with rp_filter=1 every reply came back
        assert 49.5 <= min(to_peer) and median(to_peer) <= 56, to_peer
        assert median(to_other) < 5 and median(to_self) < 5, (to_other, to_self)
        assert pair.routing() == routing  # no rule, no route: rp_filter sees what it always saw
        assert pair.in_a("cat", f"/proc/sys/net/ipv4/conf/{DEV}/rp_filter").strip() == "1"
    finally:
        host.close()


def test_stream_stays_under_the_rate_and_near_it(pair, sink):
    host = pair.agent()
    try:
        link_up(host, delay_ms=20, rate_mbit=20)
        mbit = float(stream(host, sink, 3)["throughput_mbit_s"])
        # a full-size frame (1514 bytes on the wire) carries 1448 bytes of payload: 95.6 %
        assert 0.75 * 20 < mbit <= 20 * 1448 / 1514 * 1.01, mbit
        down = host.request("link_down")
        assert down["counters"]["forwarded"] > 3 * 20e6 / 8 / 1514
        assert down["counters"]["lost"] == down["counters"]["queue_drops"] == 0
    finally:
        host.close()


def test_omit_leaves_the_slow_start_out_of_the_rate(pair, sink):
    """At 100 ms a connection needs a second or so of slow start before it fills 100 Mbit/s: a 1 s
    round counts that ramp, and with --omit 1.5 the same round measures the link after it."""
    host = pair.agent()
    try:
        link_up(host, delay_ms=100, rate_mbit=100, limit=4000)
        ramp = float(stream(host, sink, 1)["throughput_mbit_s"])
        steady = float(stream(host, sink, 1, omit=1.5)["throughput_mbit_s"])
        assert steady > 1.3 * ramp and steady > 70, (ramp, steady)
    finally:
        host.close()


def test_loss_is_counted_at_the_rate_asked(pair, sink):
    host = pair.agent()
    try:
        link_up(host, delay_ms=5, rate_mbit=20, loss_pct=10, seed=7)
        stream(host, sink, 1.5)
        counters = host.request("link_down")["counters"]
        assert counters["frames_in"] > 1500, counters
        assert 0.07 < counters["lost"] / counters["frames_in"] < 0.13, counters
    finally:
        host.close()


def test_a_full_queue_drops_at_its_tail(pair, sink):
    host = pair.agent()
    try:
        link_up(host, delay_ms=20, rate_mbit=20, limit=10)  # the link alone holds ~33 full frames
        stream(host, sink, 1)
        counters = host.request("link_down")["counters"]
        assert counters["queue_drops"] > 0 and counters["max_queue"] == 10, counters
    finally:
        host.close()


# -- what is refused ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    ({"peer": A_ADDR}, "this host's own address"),
    ({"peer": "127.0.0.1"}, "not the address of another host"),
    ({"peer": "10.66.0"}, "must be an IPv4 address"),
    ({"peer": "10.67.0.9"}, "no route to peer"),
    ({"peer": PEER, "loss_pct": 150}, "loss_pct must be a number from 0 to 100"),
    ({"peer": PEER, "limit": 0}, "limit must be an integer"),
    ({"peer": PEER, "delay": 5}, "unknown link_up argument(s): delay"),
])
def test_bad_link_arguments_are_refused_in_one_line(pair, args, message):
    host = pair.agent()
    try:
        full = {"delay_ms": 10, "rate_mbit": 10, **args}
        with pytest.raises(AgentError) as e:
            host.request("link_up", full)
        assert e.value.etype == "BadRequest" and message in str(e.value) and "\n" not in str(e.value)
        assert not (pair.state / "link.json").exists()
    finally:
        host.close()


def test_a_second_link_is_refused_while_one_is_up(pair):
    host = pair.agent()
    try:
        first = link_up(host, delay_ms=10, rate_mbit=10)
        with pytest.raises(AgentError, match="a link to 10.66.0.2 is up already"):
            link_up(host, delay_ms=20, rate_mbit=10)
        assert forwarders(first["tap"]) == [first["pid"]]
    finally:
        host.close()


# -- nothing is left behind ---------------------------------------------------------------------

def test_link_down_removes_everything_and_twice_is_harmless(pair):
    host = pair.agent()
    try:
        routing = pair.routing()
        up = link_up(host, delay_ms=30, rate_mbit=10)
        assert pair.leftovers(up["tap"]) == [f"device {up['tap']}", "qdisc clsact", "egress filter",
                                             f"process {up['pid']}", "link.json"]
        down = host.request("link_down")
        assert down["removed"] == {"filter": f"{DEV} egress pref {up['pref']}", "qdisc": f"{DEV} clsact",
                                   "process": up["pid"], "device": up["tap"]}
        assert pair.leftovers(up["tap"]) == [] and pair.routing() == routing
        assert max(pair.ping(PEER, 5)) < 10
        assert host.request("link_down") == {"link": None, "removed": {}, "counters": None}
    finally:
        host.close()


@pytest.mark.parametrize("how", ["bye", "sigterm", "eof", "heartbeat"])
def test_the_agent_takes_the_link_down_whenever_it_stops(pair, how):
    host = pair.agent()
    up = link_up(host, delay_ms=30, rate_mbit=10)
    if how == "bye":
        report = host.close()
        assert report["link"]["removed"]["filter"]
    else:
        if how == "sigterm":
            os.kill(host.facts["pid"], signal.SIGTERM)
        elif how == "eof":
            host.agent._proc.close_stdin()  # the controller is gone: EOF
        else:  # the controller heartbeats every 5 s: a 1 s bound runs out between two of them
            host.request("hello", {"heartbeat_timeout": 1.0})
        assert host.agent.exit_status(10) == 0
        host.agent.abandon()
    assert pair.leftovers(up["tap"]) == []


def test_a_killed_agent_leaves_nothing_after_the_next_start(pair):
    """Agent and forwarder SIGKILLed at once: the filter stays (traffic to the peer is lost
    meanwhile) until the next agent's start removes what the journal names."""
    host = pair.agent()
    up = link_up(host, delay_ms=30, rate_mbit=10)
    os.kill(up["pid"], signal.SIGKILL)
    os.kill(host.facts["pid"], signal.SIGKILL)
    host.agent.exit_status(10)
    host.agent.abandon()
    stale = ["qdisc clsact", "egress filter", "link.json"]  # the TAP device goes with the process
    deadline = time.monotonic() + 5
    while pair.leftovers(up["tap"]) != stale and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pair.leftovers(up["tap"]) == stale
    again = pair.agent()
    try:
        assert pair.leftovers(up["tap"]) == []
        assert max(pair.ping(PEER, 5)) < 10
    finally:
        again.close()


def test_a_forwarder_whose_agent_was_killed_takes_the_filter_down(pair):
    host = pair.agent()
    up = link_up(host, delay_ms=30, rate_mbit=10)
    os.kill(host.facts["pid"], signal.SIGKILL)
    host.agent.exit_status(10)
    host.agent.abandon()
    deadline = time.monotonic() + 5
    while pair.leftovers(up["tap"]) != ["link.json"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pair.leftovers(up["tap"]) == ["link.json"]  # the journal is the next agent's to remove
    assert max(pair.ping(PEER, 5)) < 10
    again = pair.agent()
    try:
        assert pair.leftovers(up["tap"]) == []
    finally:
        again.close()
