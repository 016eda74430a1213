"""Host sessions as Ray actors, placed on the Ray node that can reach each host.

Placement comes from the inventory: a host (or group) variable `tunefleet_ray_resource: net-a`
makes that host's actor ask for a sliver of the custom resource `net-a`, which only the Ray nodes
inside that network offer (`ray start --resources '{"net-a": 1}'`). A host with no such variable
may run anywhere. The actors need no CPU: host work waits on SSH. Hosts share actors, up to
`per_actor` each (`--workers ray:K`), and only with hosts that ask for the same resource.

The controller and agent packages travel in the job's runtime_env, so a worker node needs only
Ray and Python. An actor whose process or node dies is not restarted (see HostsWorker): its calls
fail, and their agents have restored them by themselves (their channels closed); the run
reconnects each host in a new actor of its own (controller/fleet/rejoin.py). With
RAY_ADDRESS set the actors run on that cluster; otherwise a local Ray is started, bound to loopback.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import controller
import node_agent
from controller.errors import AgentTimeout, HostError, TunefleetError
from controller.fleet.inventory import HostSpec
from controller.fleet.ray_hosts import HostsWorker, RayHost, SharedActor, _unwrap

# A local Ray runs a few long-lived actors and no tasks: no idle workers started ahead, and the
# daemons' periodic reports slowed down. Idle, they took ~0.08 of a core here, taken from the hosts'
# share of the machine (docs/benchmarks.md, "Fleet scale"); with these, ~0.05. A cluster of the
# user's (RAY_ADDRESS) keeps its own settings.
LOCAL_RAY_CONFIG = {"prestart_worker_first_driver": False, "enable_worker_prestart": False,
                    "raylet_report_resources_period_milliseconds": 1000, "metrics_report_interval_ms": 60000,
                    "debug_dump_period_milliseconds": 60000, "event_stats": False}
RESOURCE_SHARE = 0.001  # of a node's custom resource, per actor: a thousand actors fit behind one node
HOSTS_PER_ACTOR = 16  # --workers ray = ray:16; why 16: docs/benchmarks.md, "Fleet scale"


def init_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    runtime_env = {"py_modules": [controller, node_agent]}
    address = os.environ.get("RAY_ADDRESS")
    if address:
        _reachable(address)
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env, configure_logging=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                 configure_logging=False, runtime_env=runtime_env, _system_config=LOCAL_RAY_CONFIG)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster address that does not answer is one clear error now, not minutes of Ray's retries."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "ray://...": Ray's own resolution
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise TunefleetError(f"RAY_ADDRESS={address}: no Ray cluster answers there ({e.strerror or e})") from None


def placement(spec: HostSpec, offered: dict[str, float]) -> dict:
    """The actor options that pin a host to the nodes named by its inventory variable."""
    if not spec.ray_resource:
        return {}
    if spec.ray_resource not in offered:
        custom = sorted(k for k in offered if k not in ("CPU", "GPU", "memory", "object_store_memory")
                        and not k.startswith("node:") and not k.startswith("accelerator_type"))
        raise HostError(f"no Ray node offers the resource '{spec.ray_resource}' (tunefleet_ray_resource); "
                        f"the cluster offers: {', '.join(custom) or 'none'}", spec.name)
    return {"resources": {spec.ray_resource: RESOURCE_SHARE}}


def groups(specs: list[HostSpec], per_actor: int) -> list[list[HostSpec]]:
    """The hosts that share an actor: inventory order, at most per_actor each, and only hosts that
    ask for the same placement resource (an actor runs on one node, which must reach them all)."""
    by_resource: dict[str | None, list[HostSpec]] = {}
    for spec in specs:
        by_resource.setdefault(spec.ray_resource, []).append(spec)
    return [same[i:i + per_actor] for same in by_resource.values() for i in range(0, len(same), per_actor)]


class RayWorkers:
    """Starts one actor per group of up to `per_actor` hosts and waits on all their connections
    together (ray.wait, no thread each). An actor runs each call in a thread of its own: it may
    hold a call and a request for every host at once, plus an install."""

    def __init__(self, per_actor: int = HOSTS_PER_ACTOR):
        self.per_actor = per_actor

    def connect(self, specs: list[HostSpec], options) -> dict[str, Any]:
        import ray

        init_ray()
        offered = ray.cluster_resources()
        results: dict[str, Any] = {}
        pending: dict[Any, tuple[HostSpec, SharedActor]] = {}
        worker = ray.remote(num_cpus=0, max_restarts=0)(HostsWorker)  # once: Ray exports a remote class each time
        for group in groups(specs, self.per_actor):
            try:
                where = placement(group[0], offered)
            except TunefleetError as e:
                results.update({s.name: HostError(e.message, s.name) for s in group})
                continue
            actor = SharedActor(worker.options(max_concurrency=2 * len(group) + 1, **where).remote(options, len(group)))
            for spec in group:
                actor.members.add(spec.name)
                pending[actor.handle.connect.remote(spec)] = (spec, actor)
        deadline = time.monotonic() + options.connect_timeout + 60  # + a node's first runtime_env setup
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                break
            spec, actor = pending.pop(done[0])
            results[spec.name] = self._started(spec, actor, done[0])
        for spec, actor in pending.values():
            actor.release(spec.name)
            results[spec.name] = AgentTimeout("its Ray actor did not start (no node can run it?)", spec.name)
        return {s.name: results[s.name] for s in specs}

    @staticmethod
    def _started(spec: HostSpec, actor: SharedActor, ref) -> Any:
        import ray

        try:
            info = _unwrap(ray.get(ref))
        except TunefleetError as e:
            actor.release(spec.name)
            e.host = e.host or spec.name
            return e
        except ray.exceptions.RayError as e:
            actor.release(spec.name)
            return HostError(f"its Ray actor failed: {str(e).splitlines()[0]}", spec.name)
        return RayHost(spec.name, spec, actor, info["facts"], info["uploaded"])
