"""The controller's end of the agent protocol: request ids, timeouts, streamed events, and the
dead-man heartbeat.

Every ``heartbeat_every`` seconds the client sends the agent a heartbeat line (also while a
long benchmark runs), so an agent cut off by a silent partition -- packets dropped, no FIN, no
RST -- stops hearing it, restores its originals and exits (``--heartbeat-timeout``). The other
way round, a request that hears nothing at all from its agent for ``silence`` seconds (no
reply, no event: a running benchmark sends a sample every second) ends in AgentGone, so the
controller never blocks on a silent host.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from controller.errors import AgentError, AgentGone, AgentTimeout
from controller.fleet.deploy import HEARTBEAT_TIMEOUT
from controller.fleet.transport import Process
from node_agent import protocol

HEARTBEAT_EVERY = 5.0
EXIT_GRACE_S = 1.0  # an agent that is gone or going: how long to wait for its exit status and stderr

_EOF = object()
_TOO_LONG = object()


class AgentClient:
    """Talks to one running agent. One request is in flight at a time (the agent is sequential)."""

    def __init__(self, process: Process, host: str, *, heartbeat_every: float = HEARTBEAT_EVERY,
                 silence: float = HEARTBEAT_TIMEOUT):
        self.host = host
        self._proc = process
        self._ids = itertools.count(1)
        self._lines: queue.Queue = queue.Queue()
        self._lock = threading.Lock()          # one request at a time
        self._write_lock = threading.Lock()    # requests and heartbeats never interleave
        self._gone: str | None = None
        self._silence = silence
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"agent-{host}", daemon=True)
        self._reader.start()
        if heartbeat_every > 0:
            threading.Thread(target=self._beat, args=(heartbeat_every,), name=f"heartbeat-{host}",
                             daemon=True).start()

    def _beat(self, every: float) -> None:
        line = protocol.encode(protocol.HEARTBEAT)
        while not self._stop.wait(every) and self._gone is None:
            try:
                self._send(line)
            except (OSError, ValueError, EOFError):
                return

    def _send(self, data: bytes) -> None:
        with self._write_lock:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()

    def _read(self) -> None:
        """Queue the agent's lines; a line over protocol.MAX_LINE ends the reading."""
        try:
            for raw in iter(self._proc.stdout.readline, b""):
                if len(raw) > protocol.MAX_LINE + 1:
                    self._lines.put(_TOO_LONG)
                    return
                self._lines.put(raw)
        except (OSError, ValueError, EOFError):
            pass
        self._lines.put(_EOF)

    @property
    def alive(self) -> bool:
        return self._gone is None

    def request(self, op: str, args: dict | None = None, *, timeout: float = 30.0,
                on_event: Callable[[dict], None] | None = None) -> Any:
        """Send one request and wait for its reply; events for it go to on_event."""
        with self._lock:
            if self._gone:
                raise AgentGone(self._gone, self.host)
            rid = next(self._ids)
            try:
                self._send(protocol.encode(protocol.request(rid, op, args)))
            except (OSError, ValueError, EOFError) as e:
                self._proc.wait(EXIT_GRACE_S)  # an agent that exited meanwhile: its reason may still be on the way
                raise self._lost(f"cannot send to the agent: {e}") from None
            deadline = time.monotonic() + timeout
            heard = time.monotonic()
            while True:
                now = time.monotonic()
                left = deadline - now
                if self._silence > 0 and now - heard > self._silence:  # checked first: says more
                    raise self._lost(f"agent silent for {self._silence:g} s during '{op}' (host lost?)")
                if left <= 0:
                    self._gone = f"agent did not answer '{op}' within {timeout:g} s"
                    raise AgentTimeout(self._gone, self.host)
                try:
                    raw = self._lines.get(timeout=min(left, self._silence) if self._silence > 0 else left)
                except queue.Empty:
                    continue
                heard = time.monotonic()
                if raw is _EOF:
                    self._proc.wait(EXIT_GRACE_S)  # its last stderr line says why it exited: let it arrive
                    raise self._lost(f"agent exited during '{op}'")
                if raw is _TOO_LONG:
                    raise self._lost(f"agent sent a line longer than {protocol.MAX_LINE} bytes")
                try:
                    msg = protocol.decode(raw)
                except protocol.ProtocolError as e:
                    raise self._lost(f"agent sent a malformed line ({e}): {raw[:200]!r}") from None
                if "event" in msg:
                    if msg.get("id") == rid and on_event is not None:
                        on_event(msg)
                    continue
                if type(msg.get("id")) is not int or msg["id"] != rid:
                    continue  # a late reply to an abandoned request (or no request's reply)
                if msg.get("ok") is True:
                    return msg.get("result")
                err = msg.get("error") if isinstance(msg.get("error"), dict) else {}
                raise AgentError(str(err.get("message", "malformed reply from the agent"))[:2000], self.host,
                                 str(err.get("type", "InternalError")),
                                 {k: v for k, v in err.items() if k not in ("type", "message")})

    def _lost(self, why: str) -> AgentGone:
        self._stop.set()
        self._lines.put(_EOF)  # keep the EOF visible to the next caller
        tail = self._proc.stderr_tail().strip()
        self._gone = f"{why}; agent stderr: {tail.splitlines()[-1]}" if tail else why
        return AgentGone(self._gone, self.host)

    def exit_status(self, timeout: float = 2.0) -> int | None:
        return self._proc.wait(timeout)

    def stderr_tail(self) -> str:
        return self._proc.stderr_tail()

    def abandon(self) -> None:
        """Let go of an agent that failed to start or answer: close its stdin, stop waiting."""
        self._gone = self._gone or "agent abandoned"
        self._stop.set()
        self._proc.close_stdin()
        if self._proc.wait(2.0) is None:
            self._proc.kill()

    def close(self, *, keep: bool = False, timeout: float = 30.0) -> dict | None:
        """Say bye (the agent restores originals unless keep) and wait for it to exit.

        Raises AgentError when the agent says some knob could not be put back: it is left
        changed (and journaled on the host for `tunefleet restore`)."""
        result = None
        if self.alive:
            try:
                result = self.request("bye", {"keep": keep}, timeout=timeout)
            except AgentError:
                result = None
        self._stop.set()
        with self._write_lock:
            self._proc.close_stdin()
        if self._proc.wait(5.0) is None:
            self._proc.kill()
        self._gone = self._gone or "agent closed"
        errors = (result or {}).get("errors") or {}
        if errors:
            raise AgentError("left changed: " + "; ".join(
                f"{name} ({err.get('message') if isinstance(err, dict) else err})"
                for name, err in sorted(errors.items())), self.host, "OSError")
        return result
