"""Client/server pairs for a benchmark that needs a partner (a spec's ``peer``).

Each pair is one environment: the client runs the benchmark against its server, both hosts get
the same knob values (the receiver's buffers matter as much as the sender's), and the result is
the client's. ``auto`` pairs the selected hosts in inventory order, two by two (h1 -> h2,
h3 -> h4); an odd host out is left out of the run, saying so. Explicit pairs name hosts of the
selection, each at most once.

The server is reached at its inventory address, which fills ``{peer}`` in the commands.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.errors import SpecError

if TYPE_CHECKING:
    from controller.spec import TuningSpec


@dataclass(frozen=True)
class Pairing:
    pairs: dict[str, str]          # client -> server
    left_out: dict[str, str]       # host -> why it is in no pair

    @property
    def servers(self) -> list[str]:
        return list(self.pairs.values())

    def describe(self) -> str:
        return ", ".join(f"{c} -> {s}" for c, s in self.pairs.items())


def pair(spec: TuningSpec, names: list[str]) -> Pairing:
    """The pairs of ``spec.peer`` among the hosts ``names`` (inventory order); SpecError when they
    cannot be made."""
    assert spec.peer is not None  # only a spec with a peer is paired
    wanted = spec.peer.pairs
    if wanted == "auto":
        if len(names) < 2:
            raise SpecError(f"{spec.workload_name!r} needs pairs of hosts (a client and its server); "
                            f"only {', '.join(names) or 'no host'} selected")
        pairs = {names[i]: names[i + 1] for i in range(0, len(names) - 1, 2)}
        odd = {names[-1]: "no partner left for it (pairs are made two by two in inventory order)"} \
            if len(names) % 2 else {}
        return Pairing(pairs, odd)
    seen: set[str] = set()
    for client, server in wanted:
        for host in (client, server):
            if host not in names:
                raise SpecError(f"peer.pairs names {host}, which is not among the selected hosts "
                                f"({', '.join(names)})")
            if host in seen:
                raise SpecError(f"peer.pairs names {host} twice: a host is in one pair at most")
            seen.add(host)
        if client == server:
            raise SpecError(f"peer.pairs: {client} cannot be its own partner")
    pairs = {c: s for c, s in wanted}
    return Pairing(pairs, {n: "in no pair of peer.pairs" for n in names if n not in seen})


def address(host) -> str:
    """The IPv4 address a partner reaches ``host`` at: its inventory address, resolved here when it
    is a name."""
    name = host.spec.host if host.spec is not None else host.name
    try:
        return str(ipaddress.IPv4Address(name))
    except ValueError:
        try:
            return socket.gethostbyname(name)
        except OSError as e:
            raise SpecError(f"{host.name}: cannot resolve its address {name!r} for its partner: {e}") from None


def fill(command, peer: str):
    """``{peer}`` in a command (text or argv) replaced by the partner's address."""
    if isinstance(command, list):
        return [a.replace("{peer}", peer) for a in command]
    return command.replace("{peer}", peer)


def peer_values(values: dict[str, str], own: dict[str, str], partner: dict[str, str]) -> dict[str, str]:
    """What the server gets when its client is measured with ``values``: the same settings, except
    that a knob left at the client's original goes to the server's own original."""
    return {k: (partner.get(k, v) if own.get(k) == v else v) for k, v in values.items()}
