"""The agent's end of the wire: request lines in from a file descriptor, messages out.

Reads with os.read after select(), so no line ever waits in a hidden buffer; writes each
message whole with os.write (nothing to flush). Stdlib only, Python >= 3.7.
"""

import collections
import os
import select
import time

from node_agent import protocol

_HEARTBEAT = protocol.encode(protocol.HEARTBEAT).rstrip(b"\n")


class Channel:
    """Lines in from a file descriptor (select-friendly, no hidden buffering), messages out."""

    def __init__(self, in_fd, out_fd):
        self.in_fd, self.out_fd = in_fd, out_fd
        self.buf = bytearray()
        self.lines: collections.deque = collections.deque()  # bytes, or None for a line over MAX_LINE
        self.skipping = False
        self.eof = False
        self.last_heard = time.monotonic()  # when the controller last sent anything

    def pump(self):
        """Read what is available (call when select() says readable); queue complete lines."""
        chunk = os.read(self.in_fd, 1 << 16)
        if not chunk:
            self.eof = True
            if self.buf.strip() and not self.skipping:
                self.lines.append(bytes(self.buf))  # a last line without its newline
            self.buf = bytearray()
            return
        self.last_heard = time.monotonic()
        start = len(self.buf)
        self.buf += chunk
        end = self.buf.find(b"\n", start)
        while end >= 0:
            line = bytes(self.buf[:end])
            del self.buf[:end + 1]
            if self.skipping:
                self.skipping = False  # the end of an oversized line
            elif len(line) > protocol.MAX_LINE:
                self.lines.append(None)  # it ended in the chunk that took it over the limit
            elif line.strip() and line != _HEARTBEAT:
                self.lines.append(line)
            end = self.buf.find(b"\n")
        if len(self.buf) > protocol.MAX_LINE:
            self.buf = bytearray()
            if not self.skipping:
                self.skipping = True
                self.lines.append(None)

    def peer_gone(self):
        """The reader of our output went away (its end of the pipe or socket is closed)."""
        poller = select.poll()
        poller.register(self.out_fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))

    def send(self, message):
        view = memoryview(protocol.encode(message))
        while view:
            view = view[os.write(self.out_fd, view):]
