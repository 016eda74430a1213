"""Steps around a measured run: what a spec declares besides its benchmark.

A ``run`` request may carry ``before``: steps done after the knobs are applied and before the
benchmark starts, none of them timed or sampled. A step is a command (a service's stop and start,
a reset, a warm-up) run under the same rules as the benchmark (no shell, bounded, its own process
group, as the user who asked), or a wait for a TCP port to accept (a service that just started).
The first step that fails ends the request: the benchmark is not run, and the reply says which
step failed and how. Stdlib only, Python >= 3.7.
"""

import errno
import socket
import time

from node_agent import runner

MAX_STEPS = 16
WAIT_STEP_S = 0.05


class StepFailed(Exception):
    def __init__(self, report):
        Exception.__init__(self, report["message"])
        self.report = report


def prepare(raw):
    """Validated steps from a request's ``before``: ``[{"what", "cmd", "timeout", "cwd"?, "env"?}
    | {"what", "wait_tcp": "host:port", "timeout"}]``. Raises runner.BadArgs, or OSError for a
    program that is not there (before anything is written)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_STEPS:
        raise runner.BadArgs("before must be a list of at most %d steps" % MAX_STEPS)
    steps = []
    for i, step in enumerate(raw):
        if not isinstance(step, dict):
            raise runner.BadArgs("before[%d] must be an object" % i)
        what = step.get("what", "step %d" % (i + 1))
        if not isinstance(what, str) or not what or len(what) > 80:
            raise runner.BadArgs("before[%d].what must be a short text" % i)
        if "wait_tcp" in step:
            steps.append({"what": what, "wait_tcp": _address(step["wait_tcp"], i),
                          "timeout": _seconds(step.get("timeout"), i)})
        else:
            steps.append({"what": what, "prepared": runner.prepare(step)})
    return steps


def _address(text, i):
    host, sep, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise runner.BadArgs("before[%d].wait_tcp must be 'host:port'" % i)
    return host, int(port)


def _seconds(value, i):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise runner.BadArgs("before[%d].timeout must be a positive number of seconds" % i)
    return float(value)


def run(steps, watch, interrupted, emit=None):
    """Run the steps in order; a list of what each did. Raises StepFailed at the first failure
    (its report says which, how it ended and the tail of its stderr). ``emit(data)``, when given,
    is called as each step starts and about every second while it runs (``{"what", "t"}``), so
    the controller hears the agent during a long setup."""
    done = []
    for step in steps:
        started = time.monotonic()
        tell = _teller(emit, step["what"], started)
        tell(None)
        if "wait_tcp" in step:
            report = _wait_tcp(step["wait_tcp"], step["timeout"], interrupted, tell)
        else:
            report = _command(step["prepared"], watch, interrupted, tell)
        report.update(what=step["what"], duration_s=round(time.monotonic() - started, 4))
        done.append(report)
        if not report["ok"]:
            report["message"] = "%s %s" % (step["what"], report.pop("problem"))
            raise StepFailed(dict(report, steps=done))
    return done


def _teller(emit, what, started):
    def tell(_data):
        if emit is not None:
            emit({"what": what, "t": round(time.monotonic() - started, 3)})
    return tell


def _command(prepared, watch, interrupted, tell):
    result = runner.run(prepared, tell, watch, interrupted)
    report = {"ok": result["exit_code"] == 0 and not result["timed_out"], "exit_code": result["exit_code"]}
    if result["timed_out"]:
        report["problem"] = "timed out after %g s" % prepared[1]
    elif result["exit_code"] != 0:
        tail = (result["stderr_tail"] or result["stdout_tail"]).strip().splitlines()
        report["problem"] = "exited %d: %s" % (result["exit_code"], tail[-1] if tail else "no output")
    return report


def _wait_tcp(address, timeout, interrupted, tell):
    """Until a TCP connect to ``address`` succeeds, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last, told = None, time.monotonic()
    while True:
        if time.monotonic() - told >= 1.0:
            told = time.monotonic()
            tell(None)
        reason = interrupted()
        if reason:
            raise runner.Interrupted(reason)
        try:
            socket.create_connection(address, timeout=max(0.05, min(1.0, deadline - time.monotonic()))).close()
            return {"ok": True}
        except OSError as e:
            last = e
        if time.monotonic() >= deadline:
            why = errno.errorcode.get(getattr(last, "errno", None) or 0, str(last))
            return {"ok": False, "problem": "did not accept on %s:%d within %g s (%s)" % (
                address[0], address[1], timeout, why)}
        time.sleep(WAIT_STEP_S)
