"""The remote mode of the stream benchmark: a bulk transfer between two hosts.

sink          runs on the receiving host until SIGTERM: for every connection it counts the bytes
              until EOF and the seconds from accepting the connection to that EOF, and answers
              with one JSON line ``{"bytes": n, "seconds": s, "marks": [[t, bytes so far], ...]}`` (a mark
              every 0.1 s).
stream --to   sends to a sink, ``--mb`` MiB or for ``--seconds`` seconds, then half-closes and
              reads that answer: the throughput is what the receiver counted over its own time,
              so data still queued on the sender (or on an emulated link) when it stops sending
              is not counted as delivered. ``--omit S`` sends S seconds more first and leaves them
              out (TCP's slow start; iperf3's --omit): the rate over what came after them.

A round that runs out of its ``--timeout`` is censored at the bytes the receiver acknowledged
so far (TCP_INFO's tcpi_bytes_acked), over the time spent. Stdlib only, Python >= 3.7.
"""

import json
import signal
import socket
import struct
import threading
import time

IDLE_S = 30.0             # a sink connection that sends nothing for this long is closed
MARK_EVERY_S = 0.1        # how often the sink notes its count, for a sender's --omit
TCPI_BYTES_ACKED = 120    # offset of tcpi_bytes_acked (u64) in struct tcp_info (Linux >= 4.1)


class Censored(Exception):
    """The round ran past its time bound; ``measured`` is the MiB/s acknowledged so far."""

    def __init__(self, measured, detail):
        Exception.__init__(self, detail)
        self.measured = measured


def parse_address(text):
    """``HOST:PORT`` -> (host, port); ValueError with a readable message."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("--to must be HOST:PORT, got %r" % text)
    return host, int(port)


def _bytes_acked(sock):
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        return struct.unpack_from("=Q", info, TCPI_BYTES_ACKED)[0] if len(info) >= TCPI_BYTES_ACKED + 8 else None
    except OSError:
        return None


def stream_round(address, mb=None, seconds=None, timeout=20.0, omit=0.0):
    """One transfer to a sink on a fresh connection; returns the receiver's MiB/s. ``omit``: the
    first seconds (TCP's slow start, as iperf3's --omit) are sent too but not counted: the rate is
    what the receiver counted after them."""
    size = int(mb * (1 << 20)) if mb is not None else None
    chunk = memoryview(b"\0" * (1 << 18))
    start = time.monotonic()
    deadline = start + timeout + omit
    sock = socket.create_connection(address, timeout=timeout)
    with sock:
        sent = 0
        stop_at = start + omit + seconds if seconds is not None else None
        try:
            while (size is None or sent < size) and (stop_at is None or time.monotonic() < stop_at):
                now = time.monotonic()
                if now >= deadline:
                    raise socket.timeout()
                sock.settimeout(deadline - now if stop_at is None else max(0.001, min(deadline, stop_at) - now))
                want = len(chunk) if size is None else min(len(chunk), size - sent)
                try:
                    sent += sock.send(chunk[:want])
                except socket.timeout:
                    if stop_at is not None and time.monotonic() < deadline:
                        continue  # the send buffer stayed full until the time was up
                    raise
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            report = sock.makefile("rb").readline()
        except socket.timeout:
            elapsed = time.monotonic() - start
            acked = _bytes_acked(sock)
            acked = sent if acked is None else min(acked, sent)
            raise Censored(acked / float(1 << 20) / elapsed,
                           "the receiver acknowledged %.1f MiB in %.1f s" % (acked / float(1 << 20), elapsed)) from None
    try:
        answer = json.loads(report.decode("ascii"))
        received, spent = int(answer["bytes"]), float(answer["seconds"])
        marks = [(float(t), int(b)) for t, b in answer.get("marks") or []]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise OSError("the sink at %s:%d gave no count (%r)" % (address[0], address[1], report[:80])) from None
    if received != sent or spent <= 0:
        raise OSError("the sink counted %d of %d bytes in %.3f s" % (received, sent, spent))
    if omit > 0:
        after = [(t, b) for t, b in marks if t >= omit]
        if not after or spent - after[0][0] <= 0:
            raise OSError("the transfer ended %.2f s after it began, within --omit %g" % (spent, omit))
        t0, b0 = after[0]
        return (received - b0) / float(1 << 20) / (spent - t0)
    return received / float(1 << 20) / spent


def _count(conn, max_seconds):
    """One sink connection: count until EOF, answer with the count and the time it took."""
    try:
        with conn:
            start = time.monotonic()
            conn.settimeout(IDLE_S)
            buf = bytearray(1 << 18)
            marks: list = []
            total, next_mark = 0, start + MARK_EVERY_S
            while time.monotonic() - start < max_seconds:
                n = conn.recv_into(buf)
                now = time.monotonic()
                if not n:
                    answer = {"bytes": total, "seconds": now - start, "marks": marks}
                    conn.sendall(json.dumps(answer).encode("ascii") + b"\n")
                    return
                if now >= next_mark:  # the count over time, so a sender can leave its slow start out
                    marks.append((round(now - start, 4), total))
                    next_mark = now + MARK_EVERY_S
                total += n
    except OSError:
        pass  # the sender went away or went silent: nothing to report to anyone


def sink(port, bind="0.0.0.0", max_seconds=600.0, out=None):
    """Receive transfers until SIGTERM or SIGINT; each connection is bounded by ``max_seconds``
    in all and IDLE_S without data. Prints ``listening = ADDR:PORT`` once it accepts."""
    stopping = []

    def stop(*_):
        stopping.append(True)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((bind, port))
    listener.listen(64)
    listener.settimeout(0.2)  # how soon a signal is noticed
    host, bound = listener.getsockname()
    print("listening = %s:%d" % (host, bound), file=out, flush=True)
    with listener:
        while not stopping:
            try:
                conn, _ = listener.accept()
            except (socket.timeout, InterruptedError):
                continue
            worker = threading.Thread(target=_count, args=(conn, max_seconds))
            worker.daemon = True
            worker.start()
    return 0
