"""The controller's end of the agent protocol: request ids, timeouts, streamed events."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from typing import Any, Callable

from controller.errors import AgentError, AgentGone, AgentTimeout
from controller.fleet.transport import Process
from node_agent import protocol

_EOF = object()
_TOO_LONG = object()


class AgentClient:
    """Talks to one running agent. One request is in flight at a time (the agent is sequential)."""

    def __init__(self, process: Process, host: str):
        self.host = host
        self._proc = process
        self._ids = itertools.count(1)
        self._lines: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._gone: str | None = None
        self._reader = threading.Thread(target=self._read, name=f"agent-{host}", daemon=True)
        self._reader.start()

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
                self._proc.stdin.write(protocol.encode(protocol.request(rid, op, args)))
                self._proc.stdin.flush()
            except (OSError, ValueError, EOFError) as e:
                raise self._lost(f"cannot send to the agent: {e}")
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._gone = f"agent did not answer '{op}' within {timeout:g} s"
                    raise AgentTimeout(self._gone, self.host)
                try:
                    raw = self._lines.get(timeout=left)
                except queue.Empty:
                    continue
                if raw is _EOF:
                    raise self._lost(f"agent exited during '{op}'")
                if raw is _TOO_LONG:
                    raise self._lost(f"agent sent a line longer than {protocol.MAX_LINE} bytes")
                try:
                    msg = protocol.decode(raw)
                except protocol.ProtocolError as e:
                    raise self._lost(f"agent sent a malformed line ({e}): {raw[:200]!r}")
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
                                 str(err.get("type", "InternalError")))

    def _lost(self, why: str) -> AgentGone:
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
        self._proc.close_stdin()
        if self._proc.wait(5.0) is None:
            self._proc.kill()
        self._gone = self._gone or "agent closed"
        errors = (result or {}).get("errors") or {}
        if errors:
            raise AgentError("left changed: " + "; ".join(
                f"{name} ({err.get('message') if isinstance(err, dict) else err})" for name, err in sorted(errors.items())),
                self.host, "OSError")
        return result
