"""The link emulator's forwarder: the process that holds every frame for its delay.

    python3 -I agent.pyz link-forward --tap T --out DEV --delay-ms D --rate-mbit R
                                      [--loss-pct L] [--limit N] [--seed S] [--journal F]

The agent's tc filter redirects every IPv4 frame that leaves DEV for the peer into the TAP
device T (node_agent/link.py). This process reads those frames, drops a seeded random
``loss_pct`` share of them and those that find ``limit`` frames already held (tail drop,
counting waiting and in-flight frames alike, as netem's limit does), and sends each one out of
DEV at ``departure + delay``, where ``departure = max(arrival, previous departure) +
bytes * 8 / rate`` (serialization on a link of that rate). Frames go out through an AF_PACKET
socket with PACKET_QDISC_BYPASS, which skips DEV's qdisc and with it the redirecting filter, so
the routing tables, rp_filter and every other destination stay as they were.

It talks to the agent over its stdin and stdout: it prints ``ready`` once the TAP device
exists; ``stop`` on stdin makes it print its counters as one JSON line and exit. When stdin
reaches EOF without ``stop``, or SIGTERM arrives (PR_SET_PDEATHSIG sends it when the agent
dies, even by SIGKILL), the agent is gone: it takes the redirecting filter down itself (from the
agent's link journal, ``--journal``), so traffic to the peer flows again, and exits.
Stdlib only, Python >= 3.7.
"""

import argparse
import collections
import ctypes
import fcntl
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
SOL_PACKET, PACKET_QDISC_BYPASS = 263, 20
PR_SET_PDEATHSIG, PR_SET_TIMERSLACK = 1, 29
TIMER_SLACK_NS = 1000  # the kernel may wake a sleeper this late (default 50 us)
MAX_SLEEP_S = 0.01     # and up to 0.1 % of the sleep on top: long sleeps are cut into 10 ms ones
ETH_P_IP = b"\x08\x00"
READ_BATCH = 256  # frames read per wake-up before the due ones are sent again


def open_tap(name):
    """The TAP device ``name``, created by this open and gone when the process exits."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode("ascii"), IFF_TAP | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def open_out(device):
    """A packet socket that sends frames straight to ``device``'s driver, past its qdisc."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing
    sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    sock.bind((device, 0))
    sock.setblocking(False)
    return sock


def die_with_parent(parent):
    """SIGTERM when the agent dies; exit at once if it already has. Also asks for timely
    wake-ups: a frame's departure is only as exact as the sleep before it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        raise SystemExit("the agent is gone")
    libc.prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0)


class Forwarder:
    """The delay line: a FIFO of (due time, frame); departures are serialized at ``rate``."""

    def __init__(self, tap_fd, out, delay_s, rate_bps, loss_pct, limit, seed):
        self.tap_fd, self.out = tap_fd, out
        self.delay_s, self.rate_bps = delay_s, rate_bps
        self.loss_pct, self.limit = loss_pct, limit
        self.rng = random.Random(seed)
        self.queue: collections.deque = collections.deque()
        self.free_at = 0.0  # when the emulated link finishes sending the last frame taken in
        self.counters: dict = dict.fromkeys(
            ("frames_in", "forwarded", "bytes_forwarded", "lost", "queue_drops", "send_errors",
             "not_ipv4", "max_queue"), 0)

    def take(self, now):
        """Read what the TAP device holds (up to READ_BATCH frames) into the delay line."""
        c, queue = self.counters, self.queue
        for _ in range(READ_BATCH):
            try:
                frame = os.read(self.tap_fd, 65536)
            except BlockingIOError:
                return
            if frame[12:14] != ETH_P_IP:  # the kernel's own traffic on the TAP (IPv6 and such)
                c["not_ipv4"] += 1
                continue
            c["frames_in"] += 1
            if self.loss_pct and self.rng.random() * 100.0 < self.loss_pct:
                c["lost"] += 1
                continue
            if len(queue) >= self.limit:
                c["queue_drops"] += 1
                continue
            departure = max(now, self.free_at) + len(frame) * 8.0 / self.rate_bps
            self.free_at = departure
            queue.append((departure + self.delay_s, frame))
            if len(queue) > c["max_queue"]:
                c["max_queue"] = len(queue)

    def send_due(self, now):
        """Send every frame whose time has come; returns the seconds until the next one."""
        c, queue, send = self.counters, self.queue, self.out.send
        while queue and queue[0][0] <= now:
            frame = queue.popleft()[1]
            try:
                send(frame)
            except OSError:  # the driver's queue is full, or the device went away
                c["send_errors"] += 1
                continue
            c["forwarded"] += 1
            c["bytes_forwarded"] += len(frame)
        return queue[0][0] - now if queue else None

    def serve(self, control_fd, wake_fd):
        """Forward until ``stop`` arrives (returns True) or the agent is gone (returns False)."""
        clock, waiting = time.monotonic, [self.tap_fd, control_fd, wake_fd]
        pending = b""
        while True:
            timeout = self.send_due(clock())
            if timeout is not None:
                timeout = min(max(timeout, 0.0), MAX_SLEEP_S)
            ready = select.select(waiting, [], [], timeout)[0]
            if wake_fd in ready:  # SIGTERM: the agent died
                return False
            if control_fd in ready:
                data = os.read(control_fd, 4096)
                if not data:
                    return False
                pending += data
                if b"stop" in pending:
                    return True
            if self.tap_fd in ready:
                self.take(clock())


def tap_dropped(tap):
    """Frames the kernel dropped because the TAP device's queue was full (we read too slowly)."""
    try:
        with open("/sys/class/net/%s/statistics/tx_dropped" % tap) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def main(argv):
    parser = argparse.ArgumentParser(prog="link-forward")
    parser.add_argument("--tap", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--rate-mbit", type=float, required=True)
    parser.add_argument("--loss-pct", type=float, default=0.0)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--journal", default=None)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        tap_fd, out = open_tap(args.tap), open_out(args.out)
    except OSError as e:
        print("error %s" % json.dumps(str(e)), flush=True)
        return 1
    print("ready", flush=True)
    forwarder = Forwarder(tap_fd, out, args.delay_ms / 1000.0, args.rate_mbit * 1e6,
                          args.loss_pct, args.limit, args.seed)
    started = time.process_time()
    stopped = forwarder.serve(0, wake_r)
    if not stopped:
        from node_agent import linktc  # the agent is gone: undo the redirect it left behind
        linktc.orphaned(args.journal)
        return 0
    counters = forwarder.counters
    counters["queued_at_stop"] = len(forwarder.queue)
    counters["overruns"] = tap_dropped(args.tap)
    counters["cpu_s"] = round(time.process_time() - started, 3)
    try:
        print(json.dumps(counters, sort_keys=True), flush=True)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
