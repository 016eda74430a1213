"""Search strategies by name.

A strategy module registers its entry point with ``@register("name")`` when it is imported; this
registry never imports a strategy module itself at import time, so ``search.py`` (the context every
strategy uses) and the strategies (``ppo.py``, ``bo.py``) import in one direction only, and the CLI
can list the names without loading torch or optuna. ``STRATEGIES[name]`` imports the module that
defines the strategy, by name, the first time it is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping

# name -> the module that registers it; the only place a new strategy has to be named
MODULES = {
    "ppo": "controller.learn.ppo",
    "bo": "controller.learn.bo",
    "random": "controller.learn.search",
    "auto": "controller.learn.search",
}

_registered: dict[str, Callable] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator for a strategy's entry point, ``fn(ctx: SearchContext) -> None``."""

    def add(fn: Callable) -> Callable:
        _registered[name] = fn
        return fn

    return add


class _Strategies(Mapping):
    """The known strategies; looking one up loads its module."""

    def __getitem__(self, name: str) -> Callable:
        if name not in MODULES:
            raise KeyError(name)
        if name not in _registered:
            importlib.import_module(MODULES[name])
        return _registered[name]

    def __contains__(self, name: object) -> bool:  # a check by name loads nothing
        return name in MODULES

    def __iter__(self) -> Iterator[str]:
        return iter(MODULES)

    def __len__(self) -> int:
        return len(MODULES)


STRATEGIES = _Strategies()
