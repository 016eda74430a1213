"""Benchmarks built into the agent (``tunefleet-bench``), stdlib only.

accept-storm  N clients connect at once to one listener; prints ``elapsed_ms = X``, the time
              until the listener has accepted every connection (median over rounds). When the
              accept queue (net.core.somaxconn, net.ipv4.tcp_max_syn_backlog) is smaller than
              the burst, dropped SYNs cost a 1 s retransmit: a step of two to three orders.
stream        a bulk TCP transfer over loopback; prints ``throughput_mb_s = X`` (1 MB = 2**20
              bytes), the median of the rounds after a discarded warm-up transfer. Follows
              net.ipv4.tcp_rmem / tcp_wmem (every transfer is a new connection).
              With ``--to HOST:PORT`` it sends to a ``sink`` on another host instead, ``--mb`` MiB
              or for ``--seconds`` seconds, and reports what the receiver counted
              (node_agent/remote_stream.py); it also prints ``throughput_mbit_s = X``.
sink          the receiver of the remote stream, until SIGTERM.

Everything is bounded by ``--timeout`` per round; a round that runs out prints what it measured
so far with ``timed_out = 1`` and the command exits 3.
"""

import argparse
import os
import resource
import selectors
import socket
import sys
import threading
import time

from node_agent import remote_stream

HOST = "127.0.0.1"
LISTEN_BACKLOG = 65535  # the kernel caps it at net.core.somaxconn: that is what is measured


class RoundTimeout(Exception):
    def __init__(self, measured, detail):
        Exception.__init__(self, detail)
        self.measured = measured


def _median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def _listener(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(LISTEN_BACKLOG)
    return sock


def _ensure_fds(needed):
    """Raise the soft open-files limit far enough for 2 sockets per client, or refuse."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise OSError("needs %d open files, the hard limit is %d" % (needed, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _accept_all(listener, sockets, most):
    accepted = 0
    while accepted < most:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            break
        sockets.append(conn)
        accepted += 1
    return accepted


def _send_request(client):
    """A connected client sends its request, like a real one would. That byte matters: when
    the SYN queue overflows the kernel answers with a SYN cookie, and a client with nothing to
    send would never retransmit the ACK its listener dropped."""
    err = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, "a client could not connect: %s" % os.strerror(err))
    client.send(b"?")


def accept_storm_round(clients, port=0, timeout=20.0):
    """One storm; returns the milliseconds from the first connect to the last accept."""
    _ensure_fds(2 * clients + 64)
    sockets = []
    sel = selectors.DefaultSelector()
    try:
        listener = _listener(port)
        sockets.append(listener)
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ)
        address = listener.getsockname()
        pending = []
        for _ in range(clients):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(client)
            client.setblocking(False)
            pending.append(client)
        start = time.monotonic()
        for client in pending:  # every SYN leaves before the first accept
            client.connect_ex(address)
            sel.register(client, selectors.EVENT_WRITE)
        accepted = 0
        deadline = start + timeout
        while accepted < clients:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RoundTimeout((time.monotonic() - start) * 1000.0,
                                   "accepted %d of %d connections" % (accepted, clients))
            for key, _mask in sel.select(min(left, 0.5)):
                if key.fileobj is listener:
                    accepted += _accept_all(listener, sockets, clients - accepted)
                else:
                    _send_request(key.fileobj)
                    sel.unregister(key.fileobj)
        return (time.monotonic() - start) * 1000.0
    finally:
        sel.close()
        for sock in sockets:
            sock.close()


def _drain(server, done, timeout):
    """Receiver side of one transfer: read until EOF, then answer one byte with the count."""
    try:
        server.settimeout(timeout)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(timeout)
            buf = bytearray(1 << 18)
            total = 0
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                total += n
            done.append(total)
            conn.sendall(b"k")
    except OSError as e:
        done.append(e)


def stream_round(mb, timeout=20.0):
    """One transfer of ``mb`` MiB on a fresh connection; returns MiB/s."""
    size = int(mb * (1 << 20))
    chunk = memoryview(b"\0" * (1 << 18))
    server = _listener(0)
    done: list = []
    thread = threading.Thread(target=_drain, args=(server, done, timeout))
    thread.daemon = True
    thread.start()
    start = time.monotonic()
    try:
        client = socket.create_connection(server.getsockname(), timeout=timeout)
        with client:
            sent = 0
            try:
                while sent < size:
                    sent += client.send(chunk[:min(len(chunk), size - sent)])
                client.shutdown(socket.SHUT_WR)
                client.recv(1)
            except socket.timeout:
                elapsed = time.monotonic() - start
                raise RoundTimeout(sent / float(1 << 20) / elapsed,
                                   "sent %.1f of %s MiB" % (sent / float(1 << 20), mb)) from None
        elapsed = time.monotonic() - start
    finally:
        thread.join(timeout)
        server.close()
    if not done or not isinstance(done[0], int) or done[0] != size:
        raise OSError("receiver got %r of %d bytes" % (done[0] if done else None, size))
    return size / float(1 << 20) / elapsed


def _run_rounds(measure, rounds, warmup, label, unit, also=None):
    """Print the median of the rounds after ``warmup``; ``also`` = (label, factor) adds the
    same median in a second unit on the next line."""
    def report(values):
        print("%s = %.3f" % (label, _median(values)))
        if also:
            print("%s = %.3f" % (also[0], _median(values) * also[1]))

    values = []
    try:
        for i in range(warmup + rounds):
            value = measure()
            if i >= warmup:
                values.append(value)
    except (RoundTimeout, remote_stream.Censored) as e:
        values.append(e.measured)
        report(values)
        print("timed_out = 1  # %s" % e)
        return 3
    report(values)
    print("rounds = %s  # %s" % (" ".join("%.3f" % v for v in values), unit))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tunefleet-bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="name")
    storm = sub.add_parser("accept-storm", help="N loopback clients connect at once")
    storm.add_argument("--clients", type=int, default=256)
    storm.add_argument("--rounds", type=int, default=1)
    storm.add_argument("--port", type=int, default=0)
    storm.add_argument("--timeout", type=float, default=20.0, help="seconds per round")
    stream = sub.add_parser("stream", help="bulk transfer over loopback, or to a sink with --to")
    stream.add_argument("--to", default=None, metavar="HOST:PORT", help="a sink on another host")
    amount = stream.add_mutually_exclusive_group()
    amount.add_argument("--mb", type=float, default=None, help="MiB per transfer (default 64)")
    amount.add_argument("--seconds", type=float, default=None, help="send for this long (with --to)")
    stream.add_argument("--omit", type=float, default=0.0, help="with --to: send this many seconds first and "
                        "leave them out of the rate (slow start; as iperf3's --omit)")
    stream.add_argument("--rounds", type=int, default=3)
    stream.add_argument("--timeout", type=float, default=None,
                        help="seconds per round (default 20; with --seconds S, S + 20)")
    sink = sub.add_parser("sink", help="receive remote streams until SIGTERM")
    sink.add_argument("--port", type=int, required=True)
    sink.add_argument("--bind", default="0.0.0.0")
    sink.add_argument("--max-seconds", type=float, default=600.0, help="bound per connection")
    args = parser.parse_args(argv)
    if args.name is None:
        parser.print_help(sys.stderr)
        return 2
    if args.name == "sink":
        if not 0 <= args.port < 65536 or not args.max_seconds > 0:
            parser.error("--port must be 0-65535 and --max-seconds > 0")
        try:
            return remote_stream.sink(args.port, args.bind, args.max_seconds)
        except OSError as e:
            print("tunefleet-bench sink: cannot listen on %s:%d: %s" % (args.bind, args.port, e.strerror or e),
                  file=sys.stderr)
            return 1
    if args.name == "stream" and args.timeout is None:
        args.timeout = 20.0 + (args.seconds or 0.0)
    if args.rounds < 1 or args.timeout <= 0:
        parser.error("--rounds must be >= 1 and --timeout > 0")
    if args.name == "accept-storm":
        if not 1 <= args.clients <= 20000:
            parser.error("--clients must be between 1 and 20000")
        return _run_rounds(lambda: accept_storm_round(args.clients, args.port, args.timeout),
                           args.rounds, 0, "elapsed_ms", "ms")
    if args.to is not None:
        return _remote(parser, args)
    if args.seconds is not None or args.omit:
        parser.error("--seconds and --omit need --to (a loopback transfer is sized with --mb)")
    mb = 64.0 if args.mb is None else args.mb
    if not 0 < mb <= 65536:
        parser.error("--mb must be between 0 and 65536")
    return _run_rounds(lambda: stream_round(mb, args.timeout),
                       args.rounds, 1, "throughput_mb_s", "MiB/s")


def _remote(parser, args):
    try:
        address = remote_stream.parse_address(args.to)
    except ValueError as e:
        parser.error(str(e))
    if args.seconds is not None and not 0 < args.seconds <= 3600:
        parser.error("--seconds must be between 0 and 3600")
    if not 0 <= args.omit <= 600:
        parser.error("--omit must be between 0 and 600 seconds")
    mb = 64.0 if args.mb is None and args.seconds is None else args.mb
    if mb is not None and not 0 < mb <= 65536:
        parser.error("--mb must be between 0 and 65536")
    try:
        return _run_rounds(lambda: remote_stream.stream_round(address, mb, args.seconds, args.timeout, args.omit),
                           args.rounds, 1, "throughput_mb_s", "MiB/s",
                           also=("throughput_mbit_s", (1 << 20) * 8 / 1e6))
    except OSError as e:
        print("tunefleet-bench stream: %s: %s" % (args.to, e.strerror or e), file=sys.stderr)
        return 1
