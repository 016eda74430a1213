"""A fleet of connected agents. Results are data: each host yields a value or an error,
and one host failing never hides the others."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from controller.errors import SpecError, TunefleetError
from controller.fleet.executor import as_data, workers_for
from controller.fleet.facts import shared_kernels
from controller.fleet.inventory import HostSpec
from controller.fleet.options import ConnectOptions
from controller.fleet.session import Host, connect_host, start_agent  # noqa: F401  (the fleet's public names)


@dataclass
class Outcome:
    """What one host gave back: a value, or an error."""

    name: str
    value: Any = None
    error: TunefleetError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Fleet:
    hosts: dict[str, Host] = field(default_factory=dict)
    failed: dict[str, TunefleetError] = field(default_factory=dict)
    options: ConnectOptions | None = None  # how the hosts were connected (a lost one is reconnected so)

    @classmethod
    def connect(cls, specs: Iterable[HostSpec], options: ConnectOptions | None = None) -> Fleet:
        options = options or ConnectOptions()
        fleet = cls(options=options)
        for name, got in workers_for(options.workers).connect(list(specs), options).items():
            if isinstance(got, TunefleetError):
                fleet.failed[name] = got
            else:
                fleet.hosts[name] = got
        return fleet

    @property
    def names(self) -> list[str]:
        return list(self.hosts)

    def map(self, fn: Callable[[Host], Any], names: Iterable[str] | None = None) -> dict[str, Outcome]:
        """Run fn on every (or the named) host concurrently; errors come back as data."""
        chosen = {n: self.hosts[n] for n in (names if names is not None else self.hosts)}
        return {o.name: o for o in _fan_out(fn, chosen)}

    def shared_kernels(self) -> dict[str, list[str]]:
        return shared_kernels({n: h.facts for n, h in self.hosts.items()})

    def drop(self, name: str, error: TunefleetError, keep: bool = False) -> None:
        host = self.hosts.pop(name, None)
        self.failed[name] = error
        if host is not None:
            try:
                host.close(keep=keep)
            except Exception:  # noqa: BLE001 - a host being dropped may fail to close in any way; it is dropped
                pass

    def close(self, keep: bool = False) -> dict[str, Outcome]:
        """Say bye to every agent (each restores its originals unless keep)."""
        outcomes = self.map(lambda h: h.close(keep=keep))
        self.hosts.clear()
        return outcomes

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def round_trip_ms(host, n: int = 20) -> float:
    """Median of n ping round trips over the host's open agent channel, in ms."""
    import statistics
    import time

    times = []
    for _ in range(n):
        t = time.perf_counter()
        host.request("ping")
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def read_originals(fleet: Fleet, names: list[str]) -> dict[str, dict[str, str]]:
    """Each host's current values of ``names``; a host that failed, or lacks one of them, raises."""
    outcomes = fleet.map(lambda h: h.request("read", {"names": names}))
    originals = {}
    for name, out in outcomes.items():
        if out.error is not None:
            raise out.error
        if out.value.get("missing"):
            raise SpecError(f"{name}: knob(s) missing on the host: {', '.join(out.value['missing'])}")
        originals[name] = out.value["values"]
    return originals


def _fan_out(fn: Callable[[Any], Any], items: dict[str, Any]) -> list[Outcome]:
    if not items:
        return []
    with cf.ThreadPoolExecutor(max_workers=min(32, len(items)), thread_name_prefix="fleet") as pool:
        futures = {pool.submit(fn, item): name for name, item in items.items()}
        outcomes = []
        for fut, name in futures.items():
            got = as_data(fut.result, name)
            outcomes.append(Outcome(name, error=got) if isinstance(got, TunefleetError) else Outcome(name, value=got))
    return outcomes
