"""Expert settings tunefleet ships, to compare its tuned result with and to start a search from.

An administrator who does not run tunefleet applies a TuneD profile (``tuned:throughput-performance``)
or what the server's own documentation recommends (``redis:docs``, ``postgresql:docs``). Both ship
here as data, with their source and version: ``tuned.yaml`` (TuneD's profile files, read by
``tunedconf`` with TuneD's own rules) and ``servers.yaml`` (each value with the sentence it comes
from). A ``Profile`` says which sysctls it sets (``values``, includes resolved, canonical text)
and, apart from them, every setting a sysctl run cannot reproduce (``not_sysctl``), so a report can
say which part of a profile was measured.

    from controller import profiles
    profiles.names()                           # ['postgresql:docs', 'redis:docs', 'tuned:...', ...]
    p = profiles.get("tuned:network-throughput")
    p.values                                   # {'vm.dirty_ratio': '40', ..., 'net.ipv4.tcp_rmem': '4096 87380 ...'}
    profiles.for_workload("stream")            # [Profile('tuned:network-throughput'), ...]
"""

from __future__ import annotations

from pathlib import Path

from controller.profiles import shipped, userfile
from controller.profiles.model import Profile
from controller.profiles.tunedconf import ProfileError
from controller.profiles.workloads import WORKLOADS

__all__ = ["Profile", "ProfileError", "names", "get", "for_workload", "workload_keys", "load_file", "WORKLOADS"]


def names() -> list[str]:
    """Every shipped profile's name, sorted."""
    return sorted(shipped.profiles())


def get(name: str) -> Profile:
    """One shipped profile; an unknown name is a ProfileError listing the known ones."""
    found = shipped.profiles().get(name)
    if found is None:
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(names())}")
    return found


def workload_keys() -> list[str]:
    return sorted(WORKLOADS)


def for_workload(key: str) -> list[Profile]:
    """The shipped profiles an administrator would reach for with this workload, most specific first."""
    if key not in WORKLOADS:
        raise ProfileError(f"unknown workload {key!r}; known: {', '.join(workload_keys())}")
    return [get(n) for n in WORKLOADS[key]]


def load_file(path: str | Path) -> list[Profile]:
    """A user's profiles: a TuneD ``tuned.conf`` (its includes from the shipped TuneD profiles or from
    sibling profile folders) or a YAML file shaped like servers.yaml's entries."""
    return userfile.load(Path(path))
