"""The agent's request loop: newline-delimited JSON on stdin/stdout, one request at a time.

Every journaled original is written back on ``bye``, when stdin closes (the controller is gone),
on SIGTERM/SIGHUP/SIGINT, after ``idle_timeout`` seconds without a request, and after
``heartbeat_timeout`` seconds in which the controller sent nothing at all, not even its heartbeat
(a silent network partition: no FIN, no RST, no EOF), also in the middle of a benchmark. A bad request
gets an error reply; the loop itself never dies of one. Logs go to stderr only.
Stdlib only, Python >= 3.7.
"""

import errno
import logging
import os
import select
import signal
import time
import traceback

from node_agent import (
    drift,
    exits,
    facts,
    invariants,
    journal,
    link,
    metrics,
    persist,
    protocol,
    runner,
    sources,
    steps,
    sysctl,
)
from node_agent.channel import Channel

log = logging.getLogger("tunefleet.agent")


class BadArgs(ValueError):
    pass


def _names(args, key="names", required=True):
    names = args.get(key)
    if names is None and not required:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadArgs("%s must be a list of strings" % key)
    return names


def _seconds(args, key):
    value = args[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e9:
        raise BadArgs("%s must be a number of seconds >= 0" % key)
    return float(value)


class Agent:
    def __init__(self, state_dir, idle_timeout=0.0, in_fd=0, out_fd=1, heartbeat_timeout=0.0):
        self.state_dir = os.path.abspath(state_dir)
        self.idle_timeout = idle_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.channel = Channel(in_fd, out_fd)
        self.boot_id = journal.read_boot_id()
        self.journal = journal.Journal(self.state_dir, self.boot_id, coupled=sysctl.COUPLED)
        self.locked_out = None  # message when another agent owns the state folder
        # what the start did with a stale journal
        self.recovery: dict = {"restored": {}, "unchanged": {}, "errors": {}, "foreign": {}, "discarded": {}}
        self.watch = drift.Watch(_current)  # someone else writing a knob tunefleet tunes (node_agent/drift.py)
        self._drift = None  # a Drift found while a command ran
        self.exits = exits.Exits(self.state_dir)
        self.exits_recovered = []  # the exit steps a stopped agent left, run at start
        self.stopping = None
        self.last_activity = time.monotonic()
        self.sampler = None
        self.link = link.Link(self.state_dir, self.boot_id)

    # -- life cycle -------------------------------------------------------------------------
    def start(self):
        """Take the lock (or note who has it), recover a stale journal, trap signals."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        try:
            self.lock_fd = journal.take_lock(self.state_dir)
        except journal.Locked as e:
            self.locked_out = e.strerror
            log.error("%s; answering every request with an error", e.strerror)
        else:
            self.exits_recovered = self.exits.recover()  # its servers stop before its knobs go back
            self._link_down(stale=True)
            self.recovery = self.journal.recover(sysctl.write, _restorable)
            _log_errors(self.recovery)
        self.sampler = metrics.Sampler()
        self.wake_r, wake_w = os.pipe()
        for fd in (self.wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        self.stopping = self.stopping or signal.Signals(signum).name

    def _drain_wakeups(self):
        try:
            while os.read(self.wake_r, 512):
                pass
        except OSError:
            pass

    def interrupted(self):
        """Why a running command must stop now: a signal, or the controller is gone (stdin
        closed and nobody reads our output). A half-closed stdin lets queued work finish."""
        if self.stopping:
            return self.stopping
        silent = self._silent()
        if silent:
            self.stopping = silent
            return silent
        if self.channel.eof and self.channel.peer_gone():
            return "controller gone"
        return None

    def _silent(self):
        """Why the controller counts as gone: nothing heard for heartbeat_timeout seconds."""
        if self.heartbeat_timeout > 0 and time.monotonic() - self.channel.last_heard > self.heartbeat_timeout:
            return "no heartbeat for %g s" % self.heartbeat_timeout
        return None

    def serve(self):
        """Answer requests until bye, EOF, a signal or the idle timeout; then restore."""
        try:
            while not self.stopping:
                if self.channel.lines:
                    self.handle(self.channel.lines.popleft())
                    self.last_activity = time.monotonic()
                    continue
                if self.channel.eof:
                    self.stopping = "stdin closed"
                    break
                wait = None
                if self.idle_timeout > 0:
                    wait = self.idle_timeout - (time.monotonic() - self.last_activity)
                    if wait <= 0:
                        self.stopping = "idle for %g s" % self.idle_timeout
                        break
                if self.heartbeat_timeout > 0:
                    silent = self._silent()
                    if silent:
                        self.stopping = silent
                        break
                    left = self.heartbeat_timeout - (time.monotonic() - self.channel.last_heard) + 0.05
                    wait = left if wait is None else min(wait, left)
                ready, _, _ = select.select([self.channel.in_fd, self.wake_r], [], [], wait)
                if self.wake_r in ready:
                    self._drain_wakeups()
                if self.channel.in_fd in ready:
                    self.channel.pump()
        except ConnectionError:
            self.stopping = "stdout closed"
        self.finish()

    def finish(self):
        if self.locked_out:
            log.info("stopping (%s)", self.stopping)
            return
        self.run_exits()
        self._link_down()
        report = self.restore_all()
        log.info("stopping (%s): restored %d knob(s)%s", self.stopping, len(report["restored"]),
                 ", %d failed" % len(report["errors"]) if report["errors"] else "")

    def run_exits(self, key=None, rid=None):
        """Run registered exit steps (all, newest first, or ``key``'s); failures are logged. With a
        request id, ``step`` events for it tell the controller what is running."""
        emit = None if rid is None else (lambda data: self.channel.send(protocol.event(rid, "step", data)))
        try:
            reports = self.exits.run(key, emit)
        except OSError as e:
            log.error("could not update %s: %s", exits.FILE, e)
            return []
        for r in reports:
            if not r["ok"]:
                log.error("exit step %s (%s) failed: %s", r["what"], r["key"], r["message"])
        return reports

    def _link_down(self, stale=False):
        """Take the emulated link down (at start: one a dead agent left), before knobs are
        restored; a failure is logged, never stops the restore."""
        try:
            return self.link.cleanup_stale() if stale else self.link.down()
        except Exception as e:  # noqa: BLE001 - logged: it never stops the restore
            log.error("could not take the link down: %s", e)
            return {"error": str(e)}

    def restore_all(self, names=None, kept=False):
        """Write back the journaled originals (this session's; with ``kept`` the kept ones too, and
        the record of journals an earlier boot made void is reported and cleared): a ``restore``
        report plus ``left``, the names still journaled afterwards."""
        restore = self.journal.restore_kept if kept else self.journal.restore
        try:
            report = restore(sysctl.write, names, _restorable)
            if kept and names is None:
                report["earlier"] = journal.read_earlier(self.state_dir)
                journal.forget_earlier(self.state_dir)
        except OSError as e:
            log.error("could not update the journal: %s", e)
            report = {"restored": {}, "unchanged": {}, "foreign": {},
                      "errors": {"journal": {"errno": e.errno, "message": str(e)}}}
        _log_errors(report)
        for name, d in sorted(report.get("foreign", {}).items()):
            log.warning("left %s = %s as someone else set it (tunefleet had %s, original %s)",
                        name, d.get("found"), d.get("ours"), d.get("original"))
        report["left"] = self.journal.names() + self.journal.kept().names()
        return report

    # -- requests ---------------------------------------------------------------------------
    def handle(self, line):
        rid = None
        try:
            if line is None:
                raise protocol.ProtocolError("line longer than %d bytes" % protocol.MAX_LINE)
            message = protocol.decode(line)
            if isinstance(message.get("id"), int) and not isinstance(message.get("id"), bool):
                rid = message["id"]
            rid, op, args = protocol.check_request(message)
        except protocol.ProtocolError as e:
            self.channel.send(protocol.failure(rid, protocol.E_BAD_REQUEST, e))
            return
        self.channel.send(self.dispatch(rid, op, args))

    def dispatch(self, rid, op, args):
        if op not in protocol.OPS:
            return protocol.failure(rid, protocol.E_UNKNOWN_OP, "unknown op %r" % op[:80])
        if self.locked_out:
            if op == "bye":
                self.stopping = "bye"
            return _os_failure(rid, errno.EBUSY, self.locked_out)
        try:
            return protocol.reply(rid, getattr(self, "op_" + op)(rid, args))
        except (BadArgs, runner.BadArgs) as e:
            return protocol.failure(rid, protocol.E_BAD_REQUEST, e)
        except sysctl.Refused as e:
            if e.etype == protocol.E_OS:
                return _os_failure(rid, e.errno, e.message)
            return protocol.failure(rid, e.etype, e.message)
        except drift.Drift as e:
            reply = protocol.failure(rid, protocol.E_DRIFT, e)
            reply["error"]["drift"] = e.found
            return reply
        except runner.Interrupted as e:
            return _os_failure(rid, errno.EINTR, "run interrupted, the agent is stopping (%s)" % e)
        except ConnectionError:  # our stdout is gone: serve() stops
            raise
        except OSError as e:
            return _os_failure(rid, e.errno, e.strerror or str(e))
        except Exception as e:  # noqa: BLE001 - a request that fails unexpectedly is answered; the agent serves on
            log.error("%s failed:\n%s", op, traceback.format_exc())
            return protocol.failure(rid, protocol.E_INTERNAL, "%s: %s" % (type(e).__name__, e))

    def op_hello(self, _rid, args):
        # Started through sudo the agent gets no arguments (the rule allows none): the
        # controller's timeouts arrive here instead.
        timeouts = dict((key, _seconds(args, key)) for key in ("idle_timeout", "heartbeat_timeout") if key in args)
        for key, seconds in timeouts.items():
            setattr(self, key, seconds)
        result = facts.host_facts()
        result.update({
            "protocol": protocol.PROTOCOL_VERSION, "agent_hash": facts.payload_hash(),
            "pid": os.getpid(), "boot_id": self.boot_id, "state_dir": self.state_dir,
            "recovered": self.recovery["restored"], "recover_unchanged": self.recovery["unchanged"],
            "recover_errors": self.recovery["errors"], "discarded": self.recovery["discarded"],
            "recover_foreign": self.recovery["foreign"],
            "journaled": self.journal.names(), "kept": self.journal.kept().names(),
            "exits_recovered": self.exits_recovered, "exits": self.exits.keys(),
            "knobs": self.op_describe(None, {"names": _names(args, "knobs", False) or []}),
        })
        return result

    def op_ping(self, _rid, _args):
        return {"time": time.time()}

    def op_describe(self, _rid, args):
        return dict((name, sysctl.describe(name)) for name in _names(args))

    def op_read(self, _rid, args):
        values, missing, errors = {}, [], {}
        for name in _names(args):
            if not sysctl.exists(name):
                missing.append(name)
                continue
            try:
                values[name] = sysctl.read(name)
            except sysctl.Refused as e:
                errors[name] = e.message
        return {"values": values, "missing": missing, "errors": errors}

    def op_watch(self, _rid, args):
        """The values the controller measured on before any write ({name: value}): from now on a
        difference from them (or from what this agent wrote later) is someone else's change."""
        values = args.get("values")
        if not isinstance(values, dict) or not all(protocol.is_sysctl_name(n) for n in values):
            raise BadArgs("values must map sysctl names to values")
        try:
            self.watch.watch(dict((n, protocol.normalize_value(v)) for n, v in values.items()))
        except ValueError as e:
            raise BadArgs(str(e)) from None
        self._check()
        return {"watching": sorted(self._expected())}

    def op_scan(self, _rid, args):
        """What else manages these knobs here: sysctl files, TuneD, daemons (node_agent/sources.py)."""
        extra = args.get("extra")
        if extra is not None:
            try:
                extra = {"path": persist.check_path(extra.get("path")), "values": dict(extra.get("values") or {})}
            except (persist.BadPath, AttributeError, TypeError, ValueError) as e:
                raise BadArgs("extra: %s" % e) from None
        return sources.scan(_names(args), extra=extra)

    def _expected(self):
        expected = dict(self.watch.originals)
        expected.update(self.journal.expected())
        return expected

    def _check(self):
        """Raise drift.Drift when a tuned knob no longer holds tunefleet's value; such a knob
        leaves the journal at once (it is someone else's now)."""
        try:
            self.watch.check(self._expected())
        except drift.Drift as e:
            log.warning("drift: %s", e)
            self.journal.mark_foreign(e.found)
            raise

    def op_apply(self, _rid, args):
        values, bounds = args.get("values"), args.get("bounds") or {}
        if not isinstance(values, dict) or not isinstance(bounds, dict):
            raise BadArgs("values and bounds must be objects")
        self._check()
        plan, refused = [], {}
        for name, value in values.items():
            try:
                if name in self.watch.drifted:
                    raise sysctl.Refused(name, protocol.E_VALIDATION, "%s: not written, someone else changed it (%s)"
                                         % (name, drift.describe({name: self.watch.drifted[name]})))
                sysctl.check_allowed(name)
                if not sysctl.exists(name):
                    raise sysctl.Refused(name, protocol.E_VALIDATION, "%s: no such sysctl" % name)
                text = sysctl.normalize(name, value)
                sysctl.check_bounds(name, text, bounds.get(name))
                original = sysctl.read(name)
                sysctl.check_shape(name, text, original)
                plan.append((name, text, original))
            except sysctl.Refused as e:
                refused[name] = e.as_dict()
        for names, message in invariants.violations(dict((n, t) for n, t, _ in plan), _current):
            for name in names:
                refused[name] = sysctl.Refused(name, protocol.E_VALIDATION, message).as_dict()
        plan = [step for step in plan if step[0] not in refused]
        self.journal.record(self._originals(plan), dict((n, t) for n, t, _ in plan))
        applied = {}
        for name, text, original in plan:
            try:
                sysctl.write(name, text)
                applied[name] = sysctl.read(name)
                self.journal.settle(name, applied[name])
            except sysctl.Refused as e:
                refused[name] = e.as_dict()
                self.journal.settle(name, _current(name) or original)
        for name in applied:  # the kernel zeroes a coupled partner: that value is tunefleet's doing
            partner = sysctl.COUPLED.get(name)
            if partner and partner in dict(self.journal.entries):
                self.journal.settle(partner, _current(partner))
        return {"applied": applied, "refused": refused}

    def _originals(self, plan):
        """What to journal for a plan: each knob's original, preceded by the original of its
        coupled partner (the kernel zeroes the partner when the knob is written)."""
        originals, planned = [], set(name for name, _, _ in plan)
        for name, _, original in plan:
            partner = sysctl.COUPLED.get(name)
            if partner and partner not in planned and sysctl.exists(partner):
                originals.append((partner, sysctl.read(partner)))
            originals.append((name, original))
        return originals

    def op_restore(self, _rid, args):
        return self.restore_all(_names(args, required=False), bool(args.get("kept")))

    def op_sample(self, _rid, _args):
        assert self.sampler is not None  # set when the agent starts serving
        return self.sampler.sample()

    def op_run(self, rid, args):
        """Run a command; with ``apply`` (an ``apply`` request's args) first apply those values,
        and run only when none was refused: one round trip per evaluation."""
        staged = args.get("apply")
        if staged is not None and not isinstance(staged, dict):
            raise BadArgs("apply must be an object")
        prepared = runner.prepare(args)  # a command that cannot run is refused before anything is written
        before = steps.prepare(args.get("before"))
        result = {}
        if staged is not None:
            result["apply"] = self.op_apply(rid, staged)  # checks for drift first
            if result["apply"]["refused"]:
                return result
        else:
            self._check()
        watch = self._watch()
        if before:
            try:
                result["before"] = steps.run(before, watch, self.interrupted,
                                             lambda data: self.channel.send(protocol.event(rid, "step", data)))
            except steps.StepFailed as e:
                result["before_failed"] = e.report
                return result
        result.update(self._run(rid, prepared, watch))
        return result

    def _watch(self):
        """What must stay served while a command runs: requests that arrive meanwhile wait in the
        channel, and signals wake the loop."""
        def pump():
            self.channel.pump()
            if self.channel.eof:  # always readable from now on: stop watching it
                watch.pop(self.channel.in_fd, None)

        watch = {self.channel.in_fd: pump, self.wake_r: self._drain_wakeups}
        return watch

    def _run(self, rid, prepared, watch):
        """The benchmark, watched for someone else changing a tuned knob under it."""
        def emit(data):
            self.channel.send(protocol.event(rid, "sample", data))

        def interrupted():  # the agent stops, or someone else changes a knob under the benchmark
            why = self.interrupted()
            if why is None and self.watch.due():
                try:
                    self._check()
                except drift.Drift as e:
                    self._drift, why = e, "drift"
            return why

        try:
            result = runner.run(prepared, emit, watch, interrupted)
        except runner.Interrupted:
            found, self._drift = self._drift, None
            if found is not None:
                raise found from None  # the command was killed: what it measured is not tunefleet's values
            raise
        self._check()  # a change while it ran makes its figure someone else's too
        return result

    def op_on_exit(self, rid, args):
        """``{"key", "steps": [...]}`` registers steps to run when the agent stops (on disk before
        the reply); ``{"key", "run": true}`` runs that key's steps now and forgets them."""
        key = args.get("key")
        if not isinstance(key, str) or not key or len(key) > 64:
            raise BadArgs("key must be a short text")
        if args.get("run"):
            return {"ran": self.run_exits(key, rid), "registered": self.exits.keys()}
        raw = args.get("steps")
        if not isinstance(raw, list) or not raw:
            raise BadArgs("steps must be a non-empty list (see the run op's before)")
        return {"registered": self.exits.register(key, raw)}

    def op_persist(self, _rid, args):
        originals = dict(self.journal.kept().entries)
        originals.update(self.journal.entries)
        try:
            return persist.persist(args.get("values"), args.get("path"), args.get("note", ""),
                                   originals=originals, force=bool(args.get("force")))
        except persist.BadPath as e:
            raise BadArgs(str(e)) from None

    def op_unpersist(self, _rid, args):
        try:
            return persist.unpersist(args.get("path"), read=_current, write=sysctl.write)
        except persist.BadPath as e:
            raise BadArgs(str(e)) from None

    def op_link_up(self, _rid, args):
        try:
            return self.link.up(args)
        except link.BadArgs as e:
            raise BadArgs(str(e)) from None

    def op_link_down(self, _rid, _args):
        return self.link.down()

    def op_bye(self, _rid, args):
        self.stopping = "bye"
        ran = self.run_exits(rid=_rid)  # servers the run started stop first, also when values are kept
        down = self._link_down() if self.link.entry is not None else None
        if args.get("keep"):
            kept = self.journal.keep()
            log.info("bye: keeping %d knob(s); originals in %s", len(kept), journal.KEPT)
            report = {"restored": {}, "unchanged": {}, "errors": {}, "foreign": {}, "kept": kept,
                      "left": self.journal.kept().names()}
        else:
            report = self.restore_all()
        if ran:
            report["exits"] = ran
        if down is not None:
            report["link"] = down
        return report


def _log_errors(report):
    for name, error in sorted(report["errors"].items()):
        log.error("could not restore %s: %s", name, error["message"])


def _restorable(name):
    """The current value of a journaled knob (None when unreadable); a denied name is refused
    even when its value already matches, so an edited journal is reported as such."""
    sysctl.check_allowed(name)
    return _current(name)


def _current(name):
    """A knob's value on this host, or None when it is absent or unreadable."""
    try:
        return sysctl.read(name) if sysctl.exists(name) else None
    except sysctl.Refused:
        return None


def _os_failure(rid, code, message):
    reply = protocol.failure(rid, protocol.E_OS, message)
    reply["error"]["errno"] = code
    return reply
