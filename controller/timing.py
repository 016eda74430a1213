"""When a knob's new value takes effect, and whether a spec's benchmark can see it.

Writing /proc/sys is immediate, but not every reader looks again: net.core.somaxconn caps a
listener's queue when the server calls listen(), and a PostgreSQL, nginx or Redis that is already
running keeps the queue it made at start whatever is written afterwards. A benchmark that never
restarts what it measures would report such a knob as useless when it was never in effect. The
catalog says when each knob applies (controller/catalog.py ``APPLIES``); this module says what a
spec's benchmark refreshes on every measured run:

- a benchmark that starts everything it measures (the agent's built-in ones, sysbench cpu or
  fileio, a user's script) sees every value that applies up to process start;
- a client tool (pgbench, wrk, ab, redis-benchmark, ...) measures a server it does not start: it
  sees values that apply ``now`` and to ``new_sockets`` (every run opens new connections), and
  values that apply at ``listen`` or ``process_start`` only when the spec declares that server as
  its ``service``, which the run restarts before measured runs (``restart: auto`` does so when a
  knob needs it, ``always`` every time, ``never`` not at all);
- nothing within a run sees a value that applies only at ``reboot``.

A knob the benchmark cannot see is refused before anything runs, with one line saying why and how
to proceed (declare the service, or leave the knob out).
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.catalog import Catalog
    from controller.spec import TuningSpec

# Programs that load a server they do not start (their own process starts afresh every run).
CLIENT_TOOLS = frozenset({"pgbench", "ab", "wrk", "wrk2", "redis-benchmark", "memtier_benchmark", "iperf3",
                          "netperf", "h2load", "hey", "k6", "psql", "mysqlslap", "memaslap", "ycsb"})
RESTARTED = ("listen", "process_start")  # what only a restart of the measured server brings into effect
WHEN = {"listen": "when a server calls listen()", "process_start": "when a program starts",
        "reboot": "only at boot", "new_sockets": "to sockets made after the write", "now": "at once"}


def program(command) -> str:
    """The program a command line runs (its base name); empty when it does not split."""
    try:
        argv = command if isinstance(command, list) else shlex.split(command)
    except ValueError:
        return ""
    return os.path.basename(argv[0]) if argv else ""


def _is_client(spec: TuningSpec) -> bool:
    argv = spec.benchmark_command if isinstance(spec.benchmark_command, list) else spec.benchmark_command.split()
    prog = program(spec.benchmark_command)
    if prog == "sysbench":  # sysbench's OLTP tests drive a database; cpu, memory and fileio start nothing
        return any(a.startswith(("oltp", "--db-driver", "--pgsql", "--mysql")) for a in argv[1:])
    return prog in CLIENT_TOOLS


def restarts_service(spec: TuningSpec) -> bool:
    """Whether measured runs may restart the measured server (a service that is not ``never``)."""
    return spec.service is not None and spec.service.restart != "never"


def sees(spec: TuningSpec) -> set[str]:
    """When-classes (catalog APPLIES) whose new values this spec's benchmark measures."""
    if spec.service is None and not _is_client(spec):
        return {"now", "new_sockets", "listen", "process_start"}
    return {"now", "new_sockets"} | (set(RESTARTED) if restarts_service(spec) else set())


def applies(name: str, catalog: Catalog) -> str:
    tunable = catalog.get(name)
    return tunable.applies if tunable is not None else "now"


def unseen(spec: TuningSpec, catalog: Catalog, names=None) -> dict[str, str]:
    """Knob -> why this spec's benchmark cannot measure its new values (empty: it sees them all)."""
    visible, out = sees(spec), {}
    for name in names if names is not None else spec.knob_names:
        when = applies(name, catalog)
        if when in visible:
            continue
        if when == "reboot":
            out[name] = f"{name} takes effect only at boot: no run can measure a new value"
        elif spec.service is not None:
            out[name] = (f"{name} takes effect {WHEN[when]}, and the spec's service {spec.service.name} has "
                         "restart: never, so a new value could not be measured; let the run restart it (restart: "
                         "auto) or leave the knob out")
        else:
            out[name] = (f"{name} takes effect {WHEN[when]}, and {program(spec.benchmark_command)} measures a "
                         "server this spec never restarts, so a new value could not be measured; declare the server "
                         "as the spec's service (start, stop) so the run restarts it, or leave the knob out")
    return out


def needs_restart(spec: TuningSpec, catalog: Catalog, names=()) -> bool:
    """Whether measured runs restart the service: ``always``; or ``auto`` when a knob of the spec
    (or of another arm the run measures, ``names``) takes effect at listen() or process start."""
    if spec.service is None or not restarts_service(spec):
        return False
    if spec.service.restart == "always":
        return True
    return any(applies(n, catalog) in RESTARTED for n in list(spec.knob_names) + list(names))
