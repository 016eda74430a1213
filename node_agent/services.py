"""``tunefleet-service KIND ACTION [options]``: private servers for the built-in workloads.

A spec that tunes a real server (nginx, Redis, PostgreSQL) has the agent set it up, start it,
restart it before measured runs (a knob read at listen(), such as net.core.somaxconn, takes
effect only then), reset it and remove it, through this helper, the same way on every host. Each
instance is the tool's own: its own port, config, data and processes in its own folder, so the
host's own servers (a production nginx on 80, the system PostgreSQL on 5432) are never touched.

    setup     make what the instance needs (idempotent: again with the same options changes nothing)
    start     start it in the background; returns once 127.0.0.1:PORT accepts connections
    stop      stop it; succeeds when it is not running (stale pid file, folder gone)
    restart   stop (when running), then start: the server listens anew
    reset     before a measured run (postgres: history truncated, VACUUM ANALYZE, CHECKPOINT;
              redis: FLUSHALL)
    teardown  stop, then remove the instance folder; succeeds when it is already gone

Every error is one line on stderr and exit 1 (bad arguments: exit 2); success prints one line.

Stdlib only, Python >= 3.7.
"""

import argparse
import os
import sys
import time

from node_agent import instance as instance_mod
from node_agent import service_fileio, service_nginx, service_postgres, service_redis, service_sink
from node_agent.instance import ServiceError

KINDS = {"nginx": service_nginx, "redis": service_redis, "postgres": service_postgres, "fileio": service_fileio,
         "sink": service_sink}
ACTIONS = ("setup", "start", "stop", "restart", "reset", "teardown")
START_TIMEOUT_S = 30.0


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, exit 2 (argparse's usage block is what --help is for)."""
        sys.stderr.write("%s: %s (see --help)\n" % (self.prog, message))
        sys.exit(2)


def _parser():
    top = _Parser(prog="tunefleet-service", description="Private servers for the built-in workloads.",
                  formatter_class=argparse.RawDescriptionHelpFormatter,
                  epilog="\n\n".join(__doc__.split("\n\n")[2:4]))
    kinds = top.add_subparsers(dest="kind", metavar="KIND", parser_class=_Parser)
    for name, module in sorted(KINDS.items()):
        kind = kinds.add_parser(name, help="%s (default port %d)" % (name, module.PORT) if module.PORT else
                                "%s (files, no server)" % name)
        actions = kind.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
        for action in ACTIONS:
            if action == "reset" and not hasattr(module, "reset"):
                continue
            if module.PORT is None and action not in ("setup", "teardown"):
                continue
            sub = actions.add_parser(action, help=_HELP[action])
            sub.add_argument("--dir", default=None,
                             help="parent folder of the instance (default %s)" % instance_mod.default_dir())
            if action == "setup":
                if module.PORT is not None:
                    sub.add_argument("--port", type=int, default=module.PORT,
                                     help="TCP port on 127.0.0.1 (default %d)" % module.PORT)
                module.add_options(sub)
            if action in ("start", "restart"):
                sub.add_argument("--timeout", type=float, default=START_TIMEOUT_S,
                                 help="seconds to wait for the port (default %g)" % START_TIMEOUT_S)
            if action == "reset":
                sub.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    return top


_HELP = {
    "setup": "make the config (and data) in the instance folder; again: changes only what differs",
    "start": "start in the background, return once the port accepts; an error when it already runs",
    "stop": "stop it (SIGTERM, SIGKILL after a grace); fine when it does not run",
    "restart": "stop when running, then start: the server listens again with the current knobs",
    "reset": "bring the data back to what the benchmark expects, before a measured run",
    "teardown": "stop, then remove the instance folder; fine when it is gone",
}


def _setup(module, inst, args):
    opts = module.check_options(args)
    if module.PORT is not None and not 1 <= opts["port"] <= 65535:
        raise ServiceError("--port must be between 1 and 65535")
    module.precheck(inst, opts)
    inst.ensure()
    old = inst.load()
    state, changed = module.setup(inst, opts)  # changed: a file the server reads at its start
    state["kind"] = module.KIND
    if state != old:
        inst.save(state)
    head, detail = module.describe(state)
    note = "set up" if old is None else ("updated" if state != old else "unchanged")
    line = "%s %s: %s, %s, %s" % (module.KIND, note, head.split(" on ", 1)[1], detail, inst.path)
    if changed and old is not None and inst.processes():
        line += "; it still runs with the old config: restart to apply it"
    return line


def _start(module, inst, timeout):
    state = inst.load()
    if state is None:
        raise ServiceError("%s is not set up in %s: run `tunefleet-service %s setup` first" % (
            module.KIND, inst.path, module.KIND))
    running = inst.processes()
    if running:
        raise ServiceError("%s already runs from %s (pid %d): use restart to listen again, or stop" % (
            module.KIND, inst.path, running[0]))
    if instance_mod.port_open(state["port"]):
        raise ServiceError("port %d on 127.0.0.1 is in use by another program" % state["port"])
    started = time.monotonic()
    proc, offset = module.launch(inst, state)
    ready = module.ready(inst, state) if hasattr(module, "ready") else None
    inst.wait_ready(proc, offset, state["port"], timeout, ready)
    head, detail = module.describe(state)
    return "%s, pid %d, %s, %s, up in %.2f s" % (head, proc.pid, detail, inst.path, time.monotonic() - started)


def _stop(module, inst):
    started = time.monotonic()
    stopped = inst.stop()
    if stopped is None:
        return "%s was not running (%s)" % (module.KIND, inst.path)
    pids, how = stopped
    return "%s stopped: pid %d%s (%s) in %.2f s, %s" % (
        module.KIND, pids[0], " and %d more" % (len(pids) - 1) if len(pids) > 1 else "", how,
        time.monotonic() - started, inst.path)


def _teardown(module, inst):
    stopped = _stop(module, inst)
    there = os.path.lexists(inst.path)
    inst.remove()
    return "%s; %s" % (stopped, "removed %s" % inst.path if there else "nothing to remove")


def act(kind, action, args):
    """Do ``action`` on ``kind``; the summary line."""
    module = KINDS[kind]
    if not getattr(args, "timeout", 1) > 0:
        raise ServiceError("--timeout must be a positive number of seconds")
    inst = module.instance(args.dir)
    if action == "setup":
        return _setup(module, inst, args)
    if action == "start":
        return _start(module, inst, args.timeout)
    if action == "stop":
        return _stop(module, inst)
    if action == "restart":
        started = time.monotonic()
        stopped = inst.stop()
        line = _start(module, inst, args.timeout)
        return "%s; restarted in %.2f s (%s)" % (line, time.monotonic() - started,
                                                 "pid %d stopped" % stopped[0][0] if stopped else "was not running")
    if action == "reset":
        state = inst.load()
        if state is None:
            raise ServiceError("%s is not set up in %s" % (kind, inst.path))
        started = time.monotonic()
        return "%s in %.2f s" % (module.reset(inst, state, args.timeout), time.monotonic() - started)
    return _teardown(module, inst)


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.kind is None or args.action is None:
        parser.print_help(sys.stderr)
        return 2
    os.umask(0o022)  # nginx's workers and the postgres user read what is written here
    try:
        print(act(args.kind, args.action, args))
    except ServiceError as e:
        sys.stderr.write("tunefleet-service %s %s: %s\n" % (args.kind, args.action, e))
        return 1
    except OSError as e:
        sys.stderr.write("tunefleet-service %s %s: %s%s\n" % (
            args.kind, args.action, e.strerror or e, ": %s" % e.filename if e.filename else ""))
        return 1
    return 0
