"""Host workers as Ray actors, for fleets that outgrow one controller process.

An actor holds the SSH connections and agent sessions of up to K hosts (`--workers ray:K`), each
call running in a thread of its own (a threaded actor: the work is waiting on SSH, not
computing). One actor process per host cost a whole Python with ray imported (~115 MiB) and one
more process competing for the machine's cores; shared, that cost is divided by the hosts.

The controller holds a RayHost per host, which has the same surface as fleet.Host (`name`,
`facts`, `request`, `close`), so everything above the fleet runs unchanged, plus `submit`: a
host-side function (an evaluation's apply, benchmark with its streamed samples and parsing,
controller/learn/evaluation.py's Measure) runs next to the session in one actor call, and the
driver awaits a round's calls together with ray.wait. Which hosts share an actor, and where the
actors run, is controller/fleet/ray_executor.py. The facts say where the session lives
(`facts["worker"]`: the Ray node's id and address, the actor's id and pid), so results can record it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controller import errors
from controller.errors import TunefleetError
from controller.fleet.inventory import HostSpec
from controller.fleet.session import connect_host

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor


class HostsWorker:
    """Runs inside a Ray actor: connects its hosts, starts their agents, forwards requests by host name.

    An actor is not restarted when its process dies: the agents lost their channels and restored
    their hosts from the journal, so new sessions would start from the originals, and a request
    that continued an evaluation there (a benchmark after its apply) would measure the wrong
    values. The calls fail instead (AgentGone), and the run reconnects every host the actor held
    in a new actor, which lets a host back in only when it is on the run's originals
    (controller/fleet/rejoin.py)."""

    def __init__(self, options, capacity: int = 1):
        self.options = options
        self.capacity = capacity  # the hosts this actor is given: a batch has at most one call each
        self.hosts: dict[str, Any] = {}
        self.procedures: dict[int, Any] = {}  # installed once per actor, then run by key (see SharedActor)
        self.served: dict[str, Counter] = defaultdict(Counter)  # calls served per host: round trips per evaluation
        self._pool: ThreadPoolExecutor | None = None  # call_many's threads, one per host, started with the first batch

    def connect(self, spec: HostSpec) -> tuple:
        return _as_data(lambda: self._connect(spec))

    def _connect(self, spec: HostSpec) -> dict:
        import ray

        host = connect_host(spec, self.options)
        ctx = ray.get_runtime_context()
        host.facts["worker"] = {"kind": "ray", "node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                                "actor_id": ctx.get_actor_id(), "pid": os.getpid()}
        self.hosts[spec.name] = host
        return {"facts": host.facts, "uploaded": host.uploaded}

    def request(self, name: str, op: str, args: dict | None, timeout: float) -> tuple:
        """The reply and the events the agent sent while it ran (a benchmark's metric samples)."""
        self.served[name]["request"] += 1
        events: list[dict] = []
        return _as_data(lambda: self.hosts[name].request(op, args, timeout=timeout, on_event=events.append)), events

    def install(self, key: int, fn) -> None:
        self.served["*"]["install"] += 1
        self.procedures[key] = fn

    def call(self, packed: tuple) -> tuple:
        """fn(host, *args) for an installed fn: a whole evaluation in one call. (name, key, args)
        travel as one argument: Ray serializes each argument on its own, and at one call per
        evaluation that showed (~0.1 ms of CPU per call here)."""
        name, key, args = packed
        self.served[name]["call"] += 1
        return _as_data(lambda: self.procedures[key](self.hosts[name], *args))

    def call_many(self, batch: list[tuple]) -> list[tuple]:
        """Several of this actor's hosts' calls in one actor call, run side by side: a round's
        evaluations cost one Ray call per actor, not one per host (~0.9 ms of CPU each here)."""
        self.served["*"]["batch"] += 1
        if len(batch) == 1:
            return [self.call(batch[0])]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max(self.capacity, len(batch)), thread_name_prefix="host")
        return list(self._pool.map(self.call, batch))

    def calls(self) -> dict:
        """Calls served, by host name ("*": the actor's own, e.g. installs)."""
        return {name: dict(counts) for name, counts in self.served.items()}

    def close(self, name: str, keep: bool) -> tuple:
        host = self.hosts.pop(name, None)
        return _as_data(lambda: host.close(keep=keep) if host else None)


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
    cls = getattr(errors, kind, errors.HostError)
    if etype is not None and kind == "AgentError":
        raise errors.AgentError(message, host, etype)
    raise cls(message, host)


class SharedActor:
    """The driver's end of one actor and the hosts it holds: a procedure is installed once per
    actor, a lost actor is lost for all its hosts, and the actor is stopped with its last host."""

    def __init__(self, handle: Any) -> None:  # a Ray actor handle
        self.handle = handle
        self.members: set[str] = set()
        self.gone = False  # the actor died under a call: closing its hosts only kills what is left
        self._installed: dict[int, tuple[Any, int]] = {}  # id(fn) -> (fn, its key in the actor)
        self._lock = threading.Lock()

    def key(self, fn, timeout: float) -> int:
        """fn's key in the actor, installing it on first use. The install is awaited: a threaded
        actor runs calls in no particular order, so a call sent right behind it could run first."""
        import ray

        with self._lock:
            if id(fn) not in self._installed:
                key = len(self._installed)
                ray.get(self.handle.install.remote(key, fn), timeout=timeout)
                self._installed[id(fn)] = (fn, key)  # fn kept alive: its id stays its own
            return self._installed[id(fn)][1]

    def release(self, name: str) -> None:
        import ray

        with self._lock:
            self.members.discard(name)
            last = not self.members
        if last:
            ray.kill(self.handle)


@dataclass
class RayHost:
    name: str
    spec: HostSpec
    actor: SharedActor
    facts: dict = field(default_factory=dict)
    uploaded: bool = False

    def submit(self, fn, *args, timeout: float) -> RayCall:
        """fn(host, *args) run in the actor, as a future. It is sent when awaited: gather() sends a
        round's calls together, one actor call for the hosts each actor holds, and waits on them
        with ray.wait. fn travels once per actor; the later calls only name it."""
        key = self._guard(lambda: self.actor.key(fn, timeout=60))
        return RayCall(self, (self.name, key, args), timeout)

    def request(self, op: str, args: dict | None = None, *, timeout: float = 30.0, on_event=None) -> Any:
        # The actor collects the streamed events and returns them with the reply; they are replayed
        # here, in order, before the reply is returned (or its error raised), as fleet.Host delivers them.
        reply, events = self._get(self.actor.handle.request.remote(self.name, op, args, timeout), timeout + 30)
        if on_event is not None:
            for event in events:
                on_event(event)
        return _unwrap(reply)

    def close(self, keep: bool = False) -> dict | None:
        try:
            return None if self.actor.gone else _unwrap(self._get(self.actor.handle.close.remote(self.name, keep), 60))
        finally:
            self.actor.release(self.name)

    def _get(self, ref, timeout: float) -> Any:
        import ray

        return self._guard(lambda: ray.get(ref, timeout=timeout), timeout)

    def _guard(self, fn, timeout: float = 60) -> Any:
        import ray

        try:
            return fn()
        except ray.exceptions.GetTimeoutError:
            raise errors.AgentTimeout(f"host worker did not answer within {timeout:g} s", self.name) from None
        except ray.exceptions.RayError as e:
            self.actor.gone = True
            raise errors.AgentGone(f"host worker lost: {str(e).splitlines()[0]}", self.name) from None


class RayCall:
    """One host's call, sent with the other calls of a round that its actor serves (call_many);
    gather() sends and waits on a round of them together (RayCall.wait_all)."""

    def __init__(self, host: RayHost, packed: tuple, timeout: float):
        self.host = host
        self.packed = packed
        self.batch: _Batch | None = None  # set when sent
        self.index = 0
        self.deadline = time.monotonic() + timeout + 30  # + the actor's own overhead, as request allows

    def result(self) -> Any:
        if self.batch is None:
            RayCall.send([self])
        batch = self.batch
        assert batch is not None  # send() gave it one
        left = max(0.0, batch.deadline - time.monotonic())
        return _unwrap(self.host._guard(lambda: batch.fetch(left), left)[self.index])

    @staticmethod
    def send(calls: list[RayCall]) -> None:
        """The calls not sent yet, as one actor call per actor."""
        by_actor: dict[int, list[RayCall]] = {}
        for call in calls:
            if call.batch is None:
                by_actor.setdefault(id(call.host.actor), []).append(call)
        for group in by_actor.values():
            handle = group[0].host.actor.handle
            ref = group[0].host._guard(lambda: handle.call_many.remote([c.packed for c in group]))  # noqa: B023 - called at once
            batch = _Batch(ref, max(c.deadline for c in group))
            for i, call in enumerate(group):
                call.batch, call.index = batch, i

    @staticmethod
    def wait_all(calls: list[RayCall]) -> None:
        """Sends what is not sent yet, then waits until every call has answered or the latest deadline
        passed (result() then says which did not)."""
        import ray

        RayCall.send(calls)
        batches = list({id(c.batch): c.batch for c in calls if c.batch is not None}.values())  # send() gave each one
        timeout = max(0.0, max(b.deadline for b in batches) - time.monotonic())
        ray.wait([b.ref for b in batches], num_returns=len(batches), timeout=timeout)


class _Batch:
    """One call_many in flight: its replies fetched once for all its hosts (or the error it raised)."""

    def __init__(self, ref, deadline: float):
        self.ref, self.deadline = ref, deadline
        self._replies: list | None = None
        self._error: BaseException | None = None

    def fetch(self, timeout: float) -> list:
        import ray

        if self._replies is None and self._error is None:
            try:
                self._replies = ray.get(self.ref, timeout=timeout)
            except ray.exceptions.RayError as e:
                if isinstance(e, ray.exceptions.GetTimeoutError):
                    raise  # not final: a later fetch may still get the replies
                self._error = e
        if self._error is not None:
            raise self._error
        assert self._replies is not None  # got above, or the error was raised
        return self._replies
