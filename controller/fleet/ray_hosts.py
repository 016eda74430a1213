"""Host workers as Ray actors, for fleets that outgrow one controller process.

Each actor owns one host's SSH connection and agent session; the controller holds a RayHost,
which has the same surface as fleet.Host (`name`, `facts`, `request`, `close`), so everything above
the fleet runs unchanged, plus `submit`: a host-side function (an evaluation's apply, benchmark
with its streamed samples and parsing, controller/learn/evaluation.py's Measure) runs next to the
session in one actor call, and the driver awaits a round's calls together with ray.wait. Where
the actors run and how they are started is controller/fleet/ray_executor.py. The facts say where the session lives
(`facts["worker"]`: the Ray node's id and address, the actor's pid), so results can record it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from controller import errors
from controller.errors import HostError, TunefleetError
from controller.fleet.inventory import HostSpec
from controller.fleet.session import connect_host


class HostWorker:
    """Runs inside a Ray actor: connects, starts the agent, forwards requests.

    An actor is not restarted when its process dies: the agent lost its channel and restored the
    host from its journal, so a new session would start from the originals, and a request that
    continued an evaluation there (a benchmark after its apply) would measure the wrong values.
    The call fails instead (AgentGone) and the run drops the host.
    """

    def __init__(self, spec: HostSpec, options):
        self.spec = spec
        self.options = options
        self.host = None
        self.procedures: dict[int, Any] = {}  # installed once, then run by key (see RayHost.submit)
        self.served: Counter = Counter()  # calls served, by method: what one evaluation costs in round trips

    def connect(self) -> tuple:
        return _as_data(self._connect)

    def _connect(self) -> dict:
        import ray

        self.host = connect_host(self.spec, self.options)
        ctx = ray.get_runtime_context()
        self.host.facts["worker"] = {"kind": "ray", "node_id": ctx.get_node_id(),
                                     "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid()}
        return {"facts": self.host.facts, "uploaded": self.host.uploaded}

    def request(self, op: str, args: dict | None, timeout: float) -> tuple:
        """The reply and the events the agent sent while it ran (a benchmark's metric samples)."""
        self.served["request"] += 1
        events: list[dict] = []
        return _as_data(lambda: self.host.request(op, args, timeout=timeout, on_event=events.append)), events

    def install(self, key: int, fn) -> None:
        self.served["install"] += 1
        self.procedures[key] = fn

    def call(self, key: int, *args) -> tuple:
        """fn(host, *args) for an installed fn: a whole evaluation in one call."""
        self.served["call"] += 1
        return _as_data(lambda: self.procedures[key](self.host, *args))

    def calls(self) -> dict:
        return dict(self.served)

    def close(self, keep: bool) -> tuple:
        return _as_data(lambda: self.host.close(keep=keep) if self.host else None)


def _as_data(fn) -> tuple:
    """Errors cross the process boundary as plain data, rebuilt with their type on the other side."""
    try:
        return ("ok", fn())
    except TunefleetError as e:
        return ("error", type(e).__name__, e.message, e.host, getattr(e, "etype", None))


def _unwrap(reply: tuple) -> Any:
    if reply[0] == "ok":
        return reply[1]
    _, kind, message, host, etype = reply
    cls = getattr(errors, kind, HostError)
    if etype is not None and kind == "AgentError":
        raise errors.AgentError(message, host, etype)
    raise cls(message, host)


@dataclass
class RayHost:
    name: str
    spec: HostSpec
    actor: Any
    facts: dict = field(default_factory=dict)
    uploaded: bool = False
    gone: bool = False  # the actor died under a call: closing it only kills what is left
    installed: dict[int, tuple[Any, int]] = field(default_factory=dict)  # id(fn) -> (fn, its key in the actor)

    def submit(self, fn, *args, timeout: float) -> RayCall:
        """fn(host, *args) run in the actor, as a future (gather() waits on a round of them with
        ray.wait). fn travels once: the first submit installs it in the actor, the later ones only
        name it; an actor runs one caller's calls in the order they were made, so the install
        comes first."""
        if id(fn) not in self.installed:
            self.installed[id(fn)] = (fn, len(self.installed))
            self.actor.install.remote(self.installed[id(fn)][1], fn)
        return RayCall(self, self.actor.call.remote(self.installed[id(fn)][1], *args), timeout)

    def request(self, op: str, args: dict | None = None, *, timeout: float = 30.0, on_event=None) -> Any:
        # The actor collects the streamed events and returns them with the reply; they are replayed
        # here, in order, before the reply is returned (or its error raised), as fleet.Host delivers them.
        reply, events = self._get(self.actor.request.remote(op, args, timeout), timeout + 30)
        if on_event is not None:
            for event in events:
                on_event(event)
        return _unwrap(reply)

    def close(self, keep: bool = False) -> dict | None:
        import ray

        try:
            return None if self.gone else self._call(self.actor.close.remote(keep), 60)
        finally:
            ray.kill(self.actor)

    def _call(self, ref, timeout: float) -> Any:
        return _unwrap(self._get(ref, timeout))

    def _get(self, ref, timeout: float) -> Any:
        import ray

        try:
            return ray.get(ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise errors.AgentTimeout(f"host worker did not answer within {timeout:g} s", self.name)
        except ray.exceptions.RayError as e:
            self.gone = True
            raise errors.AgentGone(f"host worker lost: {str(e).splitlines()[0]}", self.name)


class RayCall:
    """One actor call in flight; gather() waits on a round of them together (RayCall.wait_all)."""

    def __init__(self, host: RayHost, ref, timeout: float):
        self.host = host
        self.ref = ref
        self.deadline = time.monotonic() + timeout + 30  # + the actor's own overhead, as request allows

    def result(self) -> Any:
        return _unwrap(self.host._get(self.ref, max(0.0, self.deadline - time.monotonic())))

    @staticmethod
    def wait_all(calls: list[RayCall]) -> None:
        """Until every call has answered or the latest deadline passed (result() then says which did not)."""
        import ray

        timeout = max(0.0, max(c.deadline for c in calls) - time.monotonic())
        ray.wait([c.ref for c in calls], num_returns=len(calls), timeout=timeout)
