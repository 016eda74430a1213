"""Where host work runs: threads in this process, or Ray actors when a fleet outgrows one
controller process (controller/fleet/ray_executor.py). Both kinds are Workers; the fleet asks
`workers_for(kind)` and never imports an implementation itself, so the Ray side can build on the
session module without the fleet importing it back (or importing ray before it is asked for)."""

from __future__ import annotations

import concurrent.futures as cf
import importlib
from collections.abc import Callable
from typing import Any, Protocol

from controller.errors import HostError, TunefleetError, UserError
from controller.fleet.session import connect_host

# kind -> "module:class"; loaded by name when a fleet asks for it
WORKERS = {
    "threads": "controller.fleet.executor:ThreadWorkers",
    "ray": "controller.fleet.ray_executor:RayWorkers",
}


class Executor(Protocol):
    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future: ...
    def shutdown(self) -> None: ...


class Workers(Protocol):
    """Starts host sessions; a host it returns has fleet.Host's surface (name, facts, request, close)."""

    def connect(self, specs: list, options) -> dict[str, Any]:
        """name -> a connected host, or the TunefleetError that says why not."""


def parse_workers(value: str) -> tuple[str, int | None]:
    """"threads", "ray" or "ray:K" (K hosts per Ray actor) -> (kind, K or None for the default)."""
    kind, sep, per = value.partition(":")
    if kind in WORKERS and not sep:
        return kind, None
    if kind == "ray" and per.isdigit() and int(per) >= 1:
        return kind, int(per)
    raise UserError(f"--workers {value}: choose threads, ray or ray:K (K hosts per Ray actor, K >= 1)")


def workers_for(value: str) -> Workers:
    kind, per = parse_workers(value)
    module, _, name = WORKERS[kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cls() if per is None else cls(per)


class ThreadExecutor:
    """One thread per host is plenty: host work is waiting on SSH, not computing."""

    def __init__(self, max_workers: int):
        self._pool = cf.ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="host")

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class ThreadWorkers:
    """Each host's SSH session in this process; connections open in parallel threads."""

    def connect(self, specs: list, options) -> dict[str, Any]:
        if not specs:
            return {}
        executor = ThreadExecutor(min(32, len(specs)))
        try:
            futures = {s.name: executor.submit(connect_host, s, options) for s in specs}
            return {name: as_data(fut.result, name) for name, fut in futures.items()}
        finally:
            executor.shutdown()


def as_data(fn: Callable[[], Any], name: str) -> Any:
    """fn's value, or its error as a TunefleetError naming the host (an unexpected one with its type)."""
    try:
        return fn()
    except TunefleetError as e:
        e.host = e.host or name
        return e
    except Exception as e:  # noqa: BLE001 - results as data: whatever one host raises is that host's error
        return HostError(f"{type(e).__name__}: {e}", name)


class Then:
    """A future whose result is fn(inner.result): the driver's end of work done elsewhere (an actor
    call's reply turned into a recorded trial). fn runs once, on the first result()."""

    def __init__(self, inner: Any, fn: Callable[[Callable[[], Any]], Any]):
        self.inner = inner
        self._fn = fn
        self._done = False
        self._value: Any = None

    def result(self) -> Any:
        if not self._done:
            self._value, self._done = self._fn(self.inner.result), True
        return self._value


def gather(futures: list) -> list[Any]:
    """Results in order; waits for all of them even when one raises, then re-raises the first error.

    Thread futures are awaited with concurrent.futures.wait; any other kind by its class's
    `wait_all` (Ray's actor calls: one ray.wait over the round's ObjectRefs, no thread each)."""
    inner = [f.inner if isinstance(f, Then) else f for f in futures]
    cf.wait([f for f in inner if isinstance(f, cf.Future)])
    kinds: dict[Any, list] = {}  # a future's type -> its futures (the type has wait_all)
    for f in inner:
        if not isinstance(f, cf.Future):
            kinds.setdefault(type(f), []).append(f)
    for kind, group in kinds.items():
        kind.wait_all(group)
    results, error = [], None
    for f in futures:  # every result taken (a Then records its trial) before an error is raised
        try:
            results.append(f.result())
        except Exception as e:  # noqa: BLE001 - the first is raised below, once every result is taken
            error = error or e
            results.append(None)
    if error is not None:
        raise error
    return results
