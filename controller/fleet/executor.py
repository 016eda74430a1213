"""Where host work runs. Threads in this process today; Ray actors when a fleet outgrows one
controller process. Both honour `submit(fn, *args) -> Future`."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, Callable, Protocol


class Executor(Protocol):
    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future: ...
    def shutdown(self) -> None: ...


class ThreadExecutor:
    """One thread per host is plenty: host work is waiting on SSH, not computing."""

    def __init__(self, max_workers: int):
        self._pool = cf.ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="host")

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def gather(futures: list[cf.Future]) -> list[Any]:
    """Results in order; waits for all of them even when one raises, then re-raises the first error."""
    cf.wait(futures)
    return [f.result() for f in futures]
