"""Runs the MCP server carries out in the background, one thread each.

`start_run` must answer at once, but a run takes minutes to hours, so each accepted run gets a
thread that does what `tunefleet run` does after its prompt: plan the goal (when no spec was
given), connect, check the spec against the hosts with the same gate, run it through the one
run API (controller/job.py), and close the fleet, which restores every host. The thread keeps
every event the run publishes, so `run_status` reads a snapshot without waiting and `watch_run`
turns events into progress notifications; `cancel` stops the run from the tool's thread (the
evaluations in flight finish) and waits for the hosts' restore report.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.errors import TunefleetError, UserError
from controller.frontend import Reach
from controller.mcpserver.models import (
    BestSoFar,
    HostRestore,
    RestoreReport,
    RunState,
    RunStatus,
)
from controller.result import RunResult

if TYPE_CHECKING:  # the run API loads the learning stack (scipy, torch): only when a run starts
    from controller.job import Event, Job
    from controller.tuner import RunOptions

OVER = ("finished", "cancelled", "failed")


@dataclass
class Launch:
    """What start_run accepted: a spec already through the gate that needs no host, or a goal to plan."""

    hosts: Path
    limit: str | None
    reach: Reach
    catalog: Any
    runs_root: Path
    options: RunOptions
    spec: Any = None                 # a TuningSpec; None: plan `goal` first
    goal: str | None = None
    model: str | None = None
    written_by: str = "model"        # who wrote the spec's commands (controller/benchcheck.py)
    budget: int | None = None        # None: the spec's training_config.total_timesteps, else 24
    keep_best: bool = False
    persist_file: str | None = None
    compare: list[str] = field(default_factory=list)  # profile names; 'auto' resolved once the goal is planned


class _Stopped(Exception):
    """Cancelled before the run itself began."""


@dataclass
class ServedRun:
    """One run of this server: its state before the job exists, the job once it does, every event."""

    id: str
    launch: Launch
    state: RunState = "connecting"
    phase: str = "connecting"
    error: str | None = None
    job: Job | None = None
    result: RunResult | None = None
    restore: RestoreReport | None = None
    run_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    cancel_asked: threading.Event = field(default_factory=threading.Event)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        if self.launch.spec is None:
            self.state = self.phase = "planning"
        self.thread = threading.Thread(target=self._main, name=f"tunefleet-run-{self.id}", daemon=True)

    # -- what watchers see
    def hear(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def _step(self, phase: RunState) -> None:
        from controller.job import Event

        self.state = self.phase = phase
        self.hear(Event("phase", {"name": phase, "detail": ""}))

    def _say(self, text: str) -> None:
        from controller.job import Event

        self.notes = (self.notes + [text])[-20:]
        self.hear(Event("message", {"text": text}))

    @property
    def over(self) -> bool:
        return self.state in OVER

    def wait(self, seen: int, timeout: float) -> list[Event]:
        """The events after the first `seen`, waiting up to `timeout` s for one (or for the end)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.events) > seen or self.over, timeout)
            return list(self.events[seen:])

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def cancel(self) -> None:
        """Stop as soon as possible: before the run begins, or after the evaluations in flight."""
        self.cancel_asked.set()
        if not self.over:
            self.state = "cancelling"
        job = self.job
        if job is not None:
            job.cancel()

    def status(self) -> RunStatus:
        """What the run is doing now; never waits on the run."""
        snap = self.job.status.snapshot() if self.job is not None else {}
        state = self.state
        out = RunStatus(run_id=self.id, state=state, phase=snap.get("phase", self.phase), detail=snap.get("detail", ""),
                        evaluations=snap.get("evaluations", 0), budget=snap.get("budget", self.launch.budget),
                        benchmarks=snap.get("benchmarks", 0), error=self.error, restore=self.restore,
                        run_dir=str(self.run_dir) if self.run_dir else None,
                        messages=(self.notes + snap.get("messages", []))[-20:],
                        seconds=round(time.monotonic() - self.started, 3), events=len(self.events))
        if snap.get("best_so_far"):
            out.best_so_far = BestSoFar.model_validate(snap["best_so_far"])
        if self.result is not None:
            r = self.result
            out.verdict, out.success, out.verification = r.verdict, r.succeeded, r.verification
        return out

    # -- the thread
    def _main(self) -> None:
        fleet = None
        try:
            spec, chosen = self._plan()
            self._step("connecting")
            fleet = self._connect(spec)
            self._step("checking")
            self._check(spec, fleet)
            self.result = self._run(spec, chosen, fleet)
        except _Stopped:
            pass
        except TunefleetError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - the server outlives one broken run; the client is told
            traceback.print_exc(file=sys.stderr)
            self.error = f"{type(e).__name__}: {e}"
        finally:
            if fleet is not None:
                kept = bool(self.result is not None and getattr(self.result, "kept", None))
                self.restore = restore_report(fleet.close(keep=kept), fleet.failed)
            self._end()

    def _end(self) -> None:
        from controller.job import Event

        state: RunState
        if self.result is not None:
            state = "cancelled" if self.result.cancelled else "finished"
        else:
            state = "cancelled" if self.cancel_asked.is_set() and self.error is None else "failed"
        with self._changed:
            self.state = state
            self.events.append(Event("over", {"state": state, "error": self.error}))
            self._changed.notify_all()

    def _stop_if_asked(self) -> None:
        if self.cancel_asked.is_set():
            raise _Stopped()

    def _plan(self):
        """The spec to run: the one given (already through the hostless gate), or the goal planned
        for these hosts (hello only) by the strategist, then the same gate."""
        from controller.frontend import (
            host_facts,
            make_plan,
            origin,
            profiles_to_compare,
        )
        from controller.gate import validate

        la = self.launch
        if la.spec is not None:
            return la.spec, None
        facts = host_facts(la.hosts, la.limit, la.reach, knobs=la.catalog.names(), strict=False)
        self._stop_if_asked()
        spec, chosen = make_plan(la.goal, None, facts, model=la.model, catalog=la.catalog,
                                 on_event=lambda kind, text: self._say(f"strategist: {text}"))
        la.written_by = origin(chosen)
        validate(spec, la.catalog, origin=la.written_by)
        la.options.compare = tuple(profiles_to_compare(la.compare, chosen))
        return spec, chosen

    def _connect(self, spec):
        from controller.frontend import connect

        _, fleet = connect(self.launch.hosts, self.launch.limit, self.launch.reach, spec.knob_names)
        for name, err in fleet.failed.items():
            self._say(f"{name}: {err.message}")
        self._stop_if_asked()
        return fleet

    def _check(self, spec, fleet) -> None:
        """The gate again, now with the hosts' facts, and what else manages the knobs (as `run`)."""
        from controller import conflicts
        from controller.frontend import reachable_facts
        from controller.gate import validate

        la = self.launch
        validate(spec, la.catalog, reachable_facts(fleet), origin=la.written_by)
        conflicts.preflight(fleet, spec, la.persist_file, False, self._say)
        self._stop_if_asked()

    def _run(self, spec, chosen, fleet) -> RunResult:
        from controller.frontend import budget_for, plan_record
        from controller.job import Job, JobRequest
        from controller.runs import RunDir

        la = self.launch
        options = la.options
        options.budget = budget_for(spec, la.budget)
        folder = RunDir.create(spec.workload_name, root=str(la.runs_root)).path
        request = JobRequest(spec, plan_record(spec, chosen, la.written_by), options, run_dir=folder,
                             keep_best=la.keep_best, persist_file=la.persist_file)
        job = Job(request, fleet)
        job.subscribe(self.hear)
        self.run_dir = folder
        self.job = job
        self.state = "running"
        if self.cancel_asked.is_set():  # asked between the check above and now
            job.cancel()
        return job.run()


def restore_report(closed: dict, unreachable: dict) -> RestoreReport:
    """fleet.close()'s outcomes (each agent's bye report) per host, and the hosts never connected."""
    hosts: dict[str, HostRestore] = {}
    for name, outcome in closed.items():
        if not outcome.ok:
            hosts[name] = HostRestore(error=str(outcome.error))
            continue
        r = outcome.value or {}
        hosts[name] = HostRestore(restored=r.get("restored") or {}, unchanged=r.get("unchanged") or {},
                                  failed=r.get("errors") or {}, foreign=r.get("foreign") or {},
                                  left=r.get("left") or [])
    for name, err in unreachable.items():
        hosts.setdefault(name, HostRestore(error=f"not connected: {err}"))
    clean = all(h.error is None and not h.left and not h.failed for h in hosts.values())
    return RestoreReport(hosts=hosts, clean=clean)


class Board:
    """Every run this server started, by id."""

    def __init__(self) -> None:
        self._runs: dict[str, ServedRun] = {}
        self._lock = threading.Lock()

    def start(self, launch: Launch) -> ServedRun:
        run = ServedRun(uuid.uuid4().hex[:10], launch)
        with self._lock:
            self._runs[run.id] = run
        run.thread.start()
        return run

    def get(self, run_id: str) -> ServedRun:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise UserError(f"{run_id}: no run of this server has that id (runs() lists past runs by folder)")
        return run

    def find(self, ref: str) -> ServedRun | None:
        with self._lock:
            return self._runs.get(ref)

    def all(self) -> list[ServedRun]:
        with self._lock:
            return list(self._runs.values())

    def cancel_all(self, timeout: float) -> None:
        """On shutdown: every run still going is cancelled and its hosts restored."""
        running = [r for r in self.all() if not r.over]
        for r in running:
            r.cancel()
        deadline = time.monotonic() + timeout
        for r in running:
            r.join(max(0.0, deadline - time.monotonic()))
