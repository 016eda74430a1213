"""The ``run`` operation: one command, no shell, bounded, with metrics while it runs.

The command gets its own session (process group), so a timeout kills everything it started.
Every ``interval`` seconds a ``sample`` event carries the metrics since the previous one; the
summary comes from a snapshot at start and one at the end (plus the samples for gauges).
Stdlib only, Python >= 3.7.
"""

import errno
import os
import select
import shlex
import signal
import subprocess
import sys
import time

from node_agent import facts, metrics

BENCH = "tunefleet-bench"
SERVICE = "tunefleet-service"
BUILTIN = {BENCH: "bench", SERVICE: "service"}  # programs that are the agent's own payload
TAIL_BYTES = 8192
KILL_GRACE_S = 2.0   # SIGTERM, then SIGKILL to the whole group
DRAIN_GRACE_S = 1.0  # after exit, how long to wait for a straggler holding the output pipes


class BadArgs(ValueError):
    """Arguments ``run`` cannot accept."""


class Interrupted(Exception):
    """The agent is stopping (stdin closed, a signal): the command was killed."""


def parse_args(args):
    """Validated (argv, timeout, interval, cwd, env) from the request's args."""
    cmd = args.get("cmd")
    if isinstance(cmd, str):
        try:
            argv = shlex.split(cmd)
        except ValueError as e:
            raise BadArgs("cannot split cmd: %s" % e) from None
    elif isinstance(cmd, list) and all(isinstance(a, str) for a in cmd):
        argv = list(cmd)
    else:
        raise BadArgs("cmd must be a string or a list of strings")
    if not argv:
        raise BadArgs("cmd is empty")
    timeout, interval = args.get("timeout"), args.get("interval", 1.0)
    for label, value in (("timeout", timeout), ("interval", interval)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise BadArgs("%s must be a positive number of seconds" % label)
    cwd, env = args.get("cwd"), args.get("env") or {}
    if cwd is not None and not isinstance(cwd, str):
        raise BadArgs("cwd must be a string")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in env.items()):
        raise BadArgs("env must map strings to strings")
    return argv, float(timeout), max(float(interval), 0.05), cwd, env


def resolve(argv, cwd=None):
    """The argv to execute: ``tunefleet-bench`` runs the agent's own benchmarks and
    ``tunefleet-service`` its server helper (node_agent/services.py), with the agent's own
    interpreter; a bare program name is looked up on PATH and the usual sbin / PostgreSQL
    folders; a relative path such as ``./bench.sh`` is taken from ``cwd``, the folder the command
    runs in."""
    if argv[0] in BUILTIN:
        return [sys.executable, "-I", facts.payload_path(), BUILTIN[argv[0]]] + argv[1:]
    name = argv[0]
    if cwd and "/" in name and not os.path.isabs(name):
        name = os.path.join(cwd, name)
    path = facts.find_program(name)
    if path is None:
        raise OSError(errno.ENOENT, "command not found: %s" % argv[0])
    return [path] + argv[1:]


class _Tail:
    def __init__(self):
        self.data = bytearray()

    def add(self, chunk):
        self.data += chunk
        if len(self.data) > TAIL_BYTES:
            del self.data[:len(self.data) - TAIL_BYTES]

    def text(self):
        return self.data.decode("utf-8", "replace")


def _kill_group(proc):
    """SIGTERM to the command's process group, SIGKILL to whatever is left after a grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        if sig == signal.SIGTERM:
            try:
                proc.wait(KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
    proc.wait()


def _pidfd(pid):
    """A file descriptor that becomes readable when process ``pid`` exits (Linux >= 5.3, Python
    >= 3.9), else None and the caller polls."""
    pidfd_open = getattr(os, "pidfd_open", None)
    try:
        return pidfd_open(pid) if pidfd_open else None
    except OSError:
        return None


def prepare(args):
    """(argv resolved, timeout, interval, cwd, env) of a ``run`` request; raises BadArgs or OSError
    (command not found) for one that cannot run."""
    argv, timeout, interval, cwd, env = parse_args(args)
    return resolve(argv, cwd), timeout, interval, cwd, env


def run(prepared, emit, watch, interrupted):
    """Run the command that prepare() made of a ``run`` request; ``emit(data)`` sends a sample event.

    ``watch`` maps file descriptors the agent must keep serving (its stdin, its signal pipe) to
    callbacks (which may remove their own entry); ``interrupted()`` returns a reason when the agent
    must stop, and then the command's group is killed and Interrupted raised.
    """
    argv, timeout, interval, cwd, env = prepared
    entry = facts.invoker()  # started through sudo: the command runs as the user who asked
    child_env = _child_env(env, entry)
    first = metrics.snapshot()
    start = time.monotonic()
    proc = _start(argv, cwd, child_env, entry)
    running = _Running(proc, first, start, timeout, interval, emit)
    try:
        running.follow(watch, interrupted)
    finally:
        running.close()
    return running.result()


def _child_env(env, entry):
    """The command's environment: None (the agent's own, passed on as it is, not copied and
    re-encoded) unless the request adds variables or the command runs as the user who asked."""
    if not env and not entry:
        return None
    child_env = dict(os.environ)
    child_env.update(env)
    if entry:
        child_env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    return child_env


def _start(argv, cwd, child_env, entry):
    """The command in a session (process group) of its own, as ``entry`` (a passwd entry) when one
    is given, its stdin empty and its stdout and stderr piped."""
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd, env=child_env,
                                start_new_session=True, close_fds=True,
                                preexec_fn=(lambda: facts.become(entry)) if entry else None)
    except OSError as e:
        raise OSError(e.errno, "cannot start %s: %s" % (argv[0], e.strerror or e)) from None


class _Running:
    """One started command until it ends: its output tails, a sample every interval, the deadline,
    and the agent's own file descriptors served meanwhile."""

    def __init__(self, proc, first, start, timeout, interval, emit):
        self.proc, self.start, self.interval, self.emit = proc, start, interval, emit
        self.snaps = [first]
        self.out_tail, self.err_tail = _Tail(), _Tail()
        self.tails = {proc.stdout.fileno(): self.out_tail, proc.stderr.fileno(): self.err_tail}
        self.open_fds = set(self.tails)
        self.exit_fd = _pidfd(proc.pid)  # readable once the command exits: no polling for its end
        self.deadline, self.next_sample = start + timeout, start + interval
        self.timed_out, self.samples, self.exited_at, self.end = False, 0, None, None
        self.reap_step = 0.001

    def follow(self, watch, interrupted):
        """Until the command exited and its pipes are drained (or a straggler had DRAIN_GRACE_S)."""
        while True:
            now = time.monotonic()
            if self.exited_at is None and self.proc.poll() is not None:
                self.exited_at, self.end = now, metrics.snapshot()
            if self.exited_at is not None and (not self.open_fds or now - self.exited_at > DRAIN_GRACE_S):
                return
            reason = interrupted()
            if reason:
                _kill_group(self.proc)
                raise Interrupted(reason)
            if self.exited_at is None and now >= self.deadline:
                self.timed_out = True
                _kill_group(self.proc)
                continue
            if self.exited_at is None and now >= self.next_sample:
                self._sample(now)
                continue
            self._serve(now, watch)

    def _sample(self, now):
        snap = metrics.snapshot()
        self.emit({"t": round(snap["mono"] - self.start, 3), "metrics": metrics.derive(self.snaps[-1], snap)})
        self.snaps.append(snap)
        self.samples += 1
        while self.next_sample <= now:
            self.next_sample += self.interval

    def _serve(self, now, watch):
        """Wait for output, the exit, or one of the agent's descriptors, until the next sample is due."""
        wait = min(self.deadline, self.next_sample) - now
        if self.exited_at is None and not self.open_fds and self.exit_fd is None:
            # Pipes closed: the exit follows within microseconds for a command that ends.
            # Poll from 1 ms up, not a flat 50 ms that a short benchmark would pay every time.
            wait, self.reap_step = min(wait, self.reap_step), min(self.reap_step * 2, 0.05)
        elif self.exited_at is not None:
            wait = min(wait, 0.05)  # draining what a leftover child still writes
        exiting = [self.exit_fd] if self.exit_fd is not None and self.exited_at is None else []
        ready, _, _ = select.select(list(self.open_fds) + list(watch) + exiting, [], [], max(0.0, min(wait, 0.5)))
        for fd in ready:
            if fd == self.exit_fd:
                continue  # proc.poll() in follow() sees the exit
            if fd in self.tails:
                chunk = os.read(fd, 65536)
                if chunk:
                    self.tails[fd].add(chunk)
                else:
                    self.open_fds.discard(fd)
            else:
                watch[fd]()

    def close(self):
        if self.proc.poll() is None:
            _kill_group(self.proc)
        if self.exit_fd is not None:
            os.close(self.exit_fd)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def result(self):
        return {
            "exit_code": self.proc.returncode,
            "duration_s": round(self.exited_at - self.start, 4),
            "timed_out": self.timed_out,
            "stdout_tail": self.out_tail.text(),
            "stderr_tail": self.err_tail.text(),
            "metrics": metrics.summarize(self.snaps + [self.end]),
            "samples": self.samples,
        }
