"""Is this benchmark command safe to run on every host, again and again?

The agent runs the command without a shell (shlex-split, exec), so shell syntax would not work
anyway; but a command that *tries* to use it, or that names a program which is not a benchmark,
means the spec was not written with care. Here a command must be:

- one invocation of a known benchmark tool (`KNOWN_TOOLS`), by name or by absolute path;
- free of shell control operators, redirections, substitutions and variables
  (; & && || | ` $( ${ $VAR > >> < 2> and newlines);
- free of destructive programs and flags: writing to block devices, re-initializing or dropping
  benchmark data (`pgbench -i`, `sysbench ... cleanup`), flushing a Redis database.

`problems(cmd, facts)` lists what is wrong, one line each (empty: fine); with the hosts' facts it
also says which hosts lack the tool. Hand-written specs and model output go through the same check.
"""

from __future__ import annotations

import os
import re
import shlex

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

# Tools hello reports per host (tools: {name: path or null}); the others cannot be checked remotely.
HELLO_TOOLS = ("pgbench", "sysbench", "ab", "wrk", "fio", "iperf3")

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


def problems(cmd, facts: dict | None = None) -> list[str]:
    """What is wrong with a benchmark command, one line each; [] when it may run."""
    if isinstance(cmd, (list, tuple)):
        text = shlex.join(str(a) for a in cmd)
    elif isinstance(cmd, str):
        text = cmd
    else:
        return [f"benchmark_command must be a string, got {type(cmd).__name__}"]
    if not text.strip():
        return ["benchmark_command is empty: name a benchmark tool invocation such as "
                "`pgbench -c 8 -j 2 -T 30 postgres`"]
    out = [f"benchmark_command `{text}` contains {why}: it runs without a shell, as one program"
           for rx, why in _SHELL if rx.search(text)]
    try:
        argv = shlex.split(text)
    except ValueError as e:
        return out + [f"benchmark_command `{text}` cannot be split into arguments: {e}"]
    prog = _program(argv)
    if prog in DESTRUCTIVE_PROGRAMS or prog.startswith("mkfs."):
        out.append(f"benchmark_command runs `{prog}`, which is not a benchmark tool and can change the "
                   f"system or destroy data: refused")
    elif prog not in KNOWN_TOOLS:
        out.append(f"benchmark_command runs `{prog}`, which is not a known benchmark tool "
                   f"(known: {', '.join(sorted(KNOWN_TOOLS))})")
    elif "/" in argv[0] and not os.path.isabs(argv[0]):
        out.append(f"benchmark_command runs `{argv[0]}` by a relative path: use the tool's name or an absolute path")
    out += [f"benchmark_command is destructive: {why}" for why in _destructive(prog, argv)]
    if prog == "tunefleet-bench" and (len(argv) < 2 or argv[1] not in TUNEFLEET_BENCH_MODES):
        out.append(f"tunefleet-bench needs a mode: {' or '.join(TUNEFLEET_BENCH_MODES)}")
    if not out and facts:
        out += missing_on_hosts(prog, facts)
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


def tools_summary() -> str:
    return "\n".join(f"- {name}: {what}" for name, what in KNOWN_TOOLS.items())
