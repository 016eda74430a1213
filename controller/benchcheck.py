"""Is this benchmark command fit to run on every host, again and again? It depends on who wrote it.

The agent runs the command without a shell (shlex-split, exec), so shell syntax would not work;
a command that *tries* to use it is refused for everyone, with the way out: put the pipeline in a
script and name the script. Beyond that, trust follows provenance (``ORIGINS``):

- ``user``: a spec the user wrote and passed with --spec. It may name any program (a script,
  `python3 loadtest.py`, k6, hey, ycsb): the user chose it, sees its argv before confirming, and
  the run folder records it.
- ``model`` and ``builtin``: a command a strategist proposed must be one invocation of a known
  benchmark tool (`KNOWN_TOOLS`, plus the ``benchmark_tools`` of the user's catalog file), by name
  or absolute path, and free of destructive programs and flags: writing to block devices,
  re-initializing or dropping benchmark data (`pgbench -i`, `sysbench ... cleanup`), flushing a
  Redis database.

`problems(cmd, facts, origin=..., tools=...)` lists what is wrong, one line each (empty: fine);
with the hosts' facts it also says which hosts lack a tool that hello reports on.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.spec import TuningSpec

KNOWN_TOOLS = {
    "pgbench": "PostgreSQL TPC-B style load (pgbench -c CLIENTS -j THREADS -T SECONDS [-S] [-C] DBNAME)",
    "sysbench": "CPU, memory, file I/O and OLTP load (sysbench cpu|memory|fileio|oltp_* ... run)",
    "ab": "Apache Bench HTTP load (ab -n N -c C URL)",
    "wrk": "HTTP load (wrk -t THREADS -c CONNS -d DURATION URL)",
    "fio": "storage I/O (fio --name=... --filename=FILE ...)",
    "iperf3": "network throughput against an iperf3 server (iperf3 -c HOST -t SECONDS)",
    "redis-benchmark": "Redis load (redis-benchmark -q -n N -c C)",
    "memtier_benchmark": "memcached/Redis load",
    "netperf": "network request/response and stream load",
    "stress-ng": "synthetic CPU/VM/IO stressors (stress-ng --cpu N --timeout 30s --metrics-brief)",
    "hackbench": "scheduler messaging load",
    "tunefleet-bench": "built into the agent: accept-storm [--clients N] | stream [--mb N] [--rounds N]",
}
TUNEFLEET_BENCH_MODES = ("accept-storm", "stream")

USER, MODEL, BUILTIN = "user", "model", "builtin"
ORIGINS = (USER, MODEL, BUILTIN)
SCRIPT_HINT = ("put the commands in a script and name the script as the benchmark (e.g. `./bench.sh`, "
               "with benchmark_cwd set to its folder)")

# Tools hello reports per host (tools: {name: path or null}); the others cannot be checked remotely.
HELLO_TOOLS = ("pgbench", "sysbench", "ab", "wrk", "fio", "iperf3", "redis-benchmark")

DESTRUCTIVE_PROGRAMS = {
    "rm", "rmdir", "dd", "mkfs", "mke2fs", "mkswap", "wipefs", "shred", "fdisk", "sfdisk", "parted", "sgdisk",
    "blkdiscard", "truncate", "shutdown", "reboot", "poweroff", "halt", "init", "telinit", "systemctl",
    "kill", "killall", "pkill", "chmod", "chown", "mv", "cp", "ln", "sysctl", "modprobe", "rmmod", "insmod",
    "iptables", "nft", "ip", "tc", "mount", "umount", "swapoff", "crontab", "userdel", "passwd", "dropdb",
    "psql", "mysql", "redis-cli", "curl", "wget", "nc", "ncat", "socat", "python", "python3", "perl", "ruby",
    "node", "sh", "bash", "dash", "zsh", "ksh", "fish", "env", "sudo", "su", "doas", "nohup", "timeout",
    "xargs", "find", "eval", "exec", "tee",
}

# A shell would interpret these; found anywhere in the text (quoted or not) they are refused.
_SHELL = [
    (re.compile(r"[\r\n]"), "a newline (one command only)"),
    (re.compile(r"`"), "backticks (command substitution)"),
    (re.compile(r"\$\("), "$( ) (command substitution)"),
    (re.compile(r"\$\{|\$[A-Za-z_]"), "a $variable (nothing expands it: give the value)"),
    (re.compile(r"&&|\|\|"), "&& / || (command chaining)"),
    (re.compile(r";"), "; (command chaining)"),
    (re.compile(r"\|"), "| (a pipe)"),
    (re.compile(r"\d*>>?|<"), "a redirection (< > >> 2>)"),
    (re.compile(r"(^|\s)&(\s|$)|&$"), "& (a background job)"),
]
_BLOCK_DEVICE = re.compile(r"/dev/(sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|md\d|dm-\d|mapper/|disk/|loop\d)")
_WRITE_MODES = re.compile(r"^(--)?(rw|readwrite)=(.*write|.*rw|trim|randtrim|trimwrite)")


def _program(argv: list[str]) -> str:
    return os.path.basename(argv[0]) if argv else ""


def _destructive(prog: str, argv: list[str]) -> list[str]:
    args = argv[1:]
    out = []
    if any(_BLOCK_DEVICE.search(a) for a in args):
        dev = next(a for a in args if _BLOCK_DEVICE.search(a))
        out.append(f"it names a block device ({dev}): a benchmark must never touch a disk's raw blocks")
    if prog == "pgbench" and any(a in ("-i", "--initialize") or re.match(r"^-i\S|^--initialize=", a)
                                 for a in args):
        out.append("pgbench -i drops and re-creates the pgbench tables: initialize once by hand, "
                   "benchmark without -i")
    if prog == "sysbench" and any(a in ("cleanup", "prepare") for a in args):
        out.append("sysbench prepare/cleanup create or delete the test data: run them once by hand, "
                   "benchmark with `run`")
    if prog == "redis-benchmark" and any(a.lower() in ("flushall", "flushdb") for a in args):
        out.append("redis-benchmark with FLUSHALL/FLUSHDB erases the database")
    if prog == "fio" and any(a in ("--trim", "--rw=trim", "--rw=randtrim") for a in args):
        out.append("fio trim discards blocks")
    if prog == "fio" and any(_WRITE_MODES.match(a) for a in args) and any(
            a.startswith("--filename=/dev/") or a.startswith("--directory=/dev") for a in args):
        out.append("fio writes to a device file")
    return out


def argv_of(cmd) -> list[str]:
    """The argv the agent will exec for ``cmd`` (a command line is shlex-split, a list kept)."""
    return [str(a) for a in cmd] if isinstance(cmd, (list, tuple)) else shlex.split(cmd)


def record(spec: TuningSpec, origin: str) -> dict:
    """What the run folder keeps about the benchmark: the exact argv, where it runs, who wrote it."""
    return {"argv": argv_of(spec.benchmark_command), "cwd": spec.benchmark_cwd, "shell": False, "origin": origin}


def _shell_syntax(text: str, argv: list[str]) -> list[str]:
    found = [why for rx, why in _SHELL if rx.search(text)]
    if any("*" in a and "://" not in a for a in argv):
        found.append("* (a glob: nothing expands it)")
    if any(a.startswith("~") for a in argv):
        found.append("~ (nothing expands it: give the full path)")
    return found


def problems(cmd, facts: dict | None = None, *, origin: str = MODEL, tools=(), cwd: str | None = None) -> list[str]:
    """What is wrong with a benchmark command, one line each; [] when it may run.

    origin: who wrote it (``ORIGINS``); tools: benchmark programs the user's catalog adds to
    `KNOWN_TOOLS` for strategists; cwd: the spec's benchmark_cwd (a relative script path needs it).
    """
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, not {origin!r}")
    if isinstance(cmd, (list, tuple)):
        text = shlex.join(str(a) for a in cmd)
    elif isinstance(cmd, str):
        text = cmd
    else:
        return [f"benchmark_command must be a string, got {type(cmd).__name__}"]
    if not text.strip():
        return ["benchmark_command is empty: name a benchmark tool invocation such as "
                "`pgbench -c 8 -j 2 -T 30 postgres`"]
    try:
        argv = argv_of(cmd)
    except ValueError as e:
        return [f"benchmark_command `{text}` cannot be split into arguments: {e}"]
    out = []
    shell = _shell_syntax(text, argv)
    if shell:
        out.append(f"benchmark_command `{text}` contains {', '.join(shell)}: it runs as one program without a "
                   f"shell; {SCRIPT_HINT}")
    prog = _program(argv)
    if origin == USER:
        if "/" in argv[0] and not os.path.isabs(argv[0]) and not cwd:
            out.append(f"benchmark_command runs `{argv[0]}` by a relative path: set benchmark_cwd to the folder "
                       "it is relative to, or give an absolute path")
    elif prog in tools:
        pass  # the user's catalog file vouches for it
    elif prog in DESTRUCTIVE_PROGRAMS or prog.startswith("mkfs."):
        out.append(f"benchmark_command runs `{prog}`, which is not a benchmark tool and can change the "
                   f"system or destroy data: refused")
    elif prog not in KNOWN_TOOLS:
        out.append(f"benchmark_command runs `{prog}`, which is not a known benchmark tool "
                   f"(known: {', '.join(sorted(set(KNOWN_TOOLS) | set(tools)))}; a catalog file's "
                   "benchmark_tools adds more)")
    elif "/" in argv[0] and not os.path.isabs(argv[0]):
        out.append(f"benchmark_command runs `{argv[0]}` by a relative path: use the tool's name or an absolute path")
    if origin != USER:
        out += [f"benchmark_command is destructive: {why}" for why in _destructive(prog, argv)]
    if prog == "tunefleet-bench" and (len(argv) < 2 or argv[1] not in TUNEFLEET_BENCH_MODES):
        out.append(f"tunefleet-bench needs a mode: {' or '.join(TUNEFLEET_BENCH_MODES)}")
    if not out and facts:
        out += missing_on_hosts(prog, facts)
    return out


SERVICE_PROGRAM = "tunefleet-service"


def spec_steps(spec: TuningSpec) -> list[tuple[str, str | list[str]]]:
    """(field, command) of every command a spec runs besides its benchmark."""
    out = [(f"setup[{i}]", c) for i, c in enumerate(spec.setup or [])]
    out += [(f"teardown[{i}]", c) for i, c in enumerate(spec.teardown or [])]
    out += [(name, getattr(spec, name)) for name in ("reset", "warmup") if getattr(spec, name) is not None]
    if spec.service is not None:
        out += [("service.start", spec.service.start), ("service.stop", spec.service.stop)]
    return out


def step_problems(spec: TuningSpec, origin: str = MODEL, tools=()) -> list[str]:
    """What is wrong with a spec's other commands, one line each. Nothing runs them through a shell.
    A strategist's warm-up is held to the benchmark's rules; its setup, reset, service and teardown
    may only drive the tool's own private servers (tunefleet-service), never a host's own: a plan
    does not restart a user's PostgreSQL or re-initialize its data. A user's spec may run anything."""
    out = []
    for field, cmd in spec_steps(spec):
        try:
            argv = argv_of(cmd)
        except ValueError as e:
            out.append(f"{field} cannot be split into arguments: {e}")
            continue
        text = cmd if isinstance(cmd, str) else shlex.join(argv)
        shell = _shell_syntax(text, argv)
        if shell:
            out.append(f"{field} `{text}` contains {', '.join(shell)}: it runs as one program without a shell; "
                       f"{SCRIPT_HINT}")
        if origin == USER:
            continue
        if field == "warmup":
            out += [p.replace("benchmark_command", "warmup") for p in problems(cmd, origin=origin, tools=tools)]
        elif _program(argv) != SERVICE_PROGRAM:
            out.append(f"{field} runs `{_program(argv)}`: a plan's setup, reset, service and teardown steps may "
                       f"only use {SERVICE_PROGRAM} (the tool's own private servers), never a host's own services")
    return out


def missing_on_hosts(prog: str, facts: dict) -> list[str]:
    """Hosts (name -> hello facts) on which hello reported the tool absent."""
    if prog not in HELLO_TOOLS:
        return []
    lacking = [name for name, f in facts.items() if isinstance(f, dict) and isinstance(f.get("tools"), dict)
               and prog in f["tools"] and not f["tools"][prog]]
    if not lacking:
        return []
    return [f"{prog} is not installed on {', '.join(sorted(lacking))}: choose a tool every host has "
            f"(see inspect_hosts) or install it there"]


def tools_summary(tools=()) -> str:
    """The known tools, one line each, and those the user's catalog adds."""
    lines = [f"- {name}: {what}" for name, what in KNOWN_TOOLS.items()]
    lines += [f"- {name}: added by the user's catalog file" for name in tools if name not in KNOWN_TOOLS]
    return "\n".join(lines)
