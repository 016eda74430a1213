"""Host workers as Ray actors, for fleets that outgrow one controller process.

Each actor owns one host's SSH connection and agent session; the controller holds a RayHost,
which has the same surface as fleet.Host (`name`, `facts`, `request`, `close`), so everything above
the fleet — evaluators, the VecEnv, the tuner — runs unchanged. With RAY_ADDRESS set, the actors
run on an existing Ray cluster; otherwise a local Ray is started, bound to loopback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from controller import errors
from controller.errors import HostError, TunefleetError
from controller.fleet.inventory import HostSpec


class HostWorker:
    """Runs inside a Ray actor: connects, starts the agent, forwards requests."""

    def __init__(self, spec: HostSpec, options):
        self.spec = spec
        self.options = options
        self.host = None

    def connect(self) -> tuple:
        from controller.fleet.fleet import connect_host

        def go():
            self.host = connect_host(self.spec, self.options)
            return {"facts": self.host.facts, "uploaded": self.host.uploaded}

        return _as_data(go)

    def request(self, op: str, args: dict | None, timeout: float) -> tuple:
        return _as_data(lambda: self.host.request(op, args, timeout=timeout))

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

    def request(self, op: str, args: dict | None = None, *, timeout: float = 30.0, on_event=None) -> Any:
        # Streamed events stay in the actor; the reply carries the run's summary.
        return self._call(self.actor.request.remote(op, args, timeout), timeout + 30)

    def close(self, keep: bool = False) -> dict | None:
        import ray

        try:
            return self._call(self.actor.close.remote(keep), 60)
        finally:
            ray.kill(self.actor)

    def _call(self, ref, timeout: float) -> Any:
        import ray

        try:
            return _unwrap(ray.get(ref, timeout=timeout))
        except ray.exceptions.GetTimeoutError:
            raise errors.AgentTimeout(f"host worker did not answer within {timeout:g} s", self.name)
        except ray.exceptions.RayError as e:
            raise errors.AgentGone(f"host worker lost: {str(e).splitlines()[0]}", self.name)


def init_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                 configure_logging=False)


def connect_ray_host(spec: HostSpec, options) -> RayHost:
    import ray

    init_ray()
    # Host work waits on SSH: an actor needs no CPU reservation, so any number fit on a node.
    actor = ray.remote(num_cpus=0)(HostWorker).options(name=None).remote(spec, options)
    try:
        info = _unwrap(ray.get(actor.connect.remote(), timeout=options.connect_timeout + 60))
    except BaseException:
        ray.kill(actor)
        raise
    return RayHost(spec.name, spec, actor, info["facts"], info["uploaded"])
