"""One run API for every front end: the command line, chat, the benchmarks and the MCP server.

A `Job` carries out a whole run on a connected fleet: the run folder and its records (spec,
plan, trials, options), `tune()`, keeping or persisting the winner when asked, result.json (a
typed `RunResult`, written atomically) and report.html. While it runs it publishes events (a
phase starting, an evaluation recorded, a message, the verification done, the end) to every
subscriber, and keeps a status any thread may read (`status()`); another thread may cancel it
(`cancel()`): the evaluations in flight finish, no new one starts, the folder's result says
"cancelled", and the caller closes the fleet, which restores every host.

    job = Job(JobRequest(spec, plan, options), fleet)
    job.subscribe(print)          # Event(kind, data, time)
    result = job.run()            # RunResult; the caller then closes the fleet
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller import history, htmlreport
from controller.errors import Cancelled, TunefleetError
from controller.fleet.fleet import Fleet
from controller.learn.evaluation import Trial
from controller.result import RunResult
from controller.runs import RunDir
from controller.spec import TuningSpec
from controller.tuner import Reporter, RunOptions, tune

PHASES = ("setup", "baseline", "search", "confirm", "verify")


@dataclass(frozen=True)
class Event:
    kind: str                      # phase | trial | message | verified | done | cancelled | failed
    data: dict[str, Any]
    time: float = field(default_factory=time.time)


@dataclass
class JobRequest:
    """Everything a run needs besides its hosts: what to run and how."""

    spec: TuningSpec
    plan: dict[str, Any] | None = None      # how the spec was chosen (plan.json); None: the user's spec file
    options: RunOptions = field(default_factory=RunOptions)
    run_dir: Path | None = None             # default: runs/<time>-<workload>
    keep_best: bool = False                 # leave the winner applied (until reboot)
    persist_file: str | None = None         # and write it to this sysctl.d drop-in, when it is verified
    force: bool = False                     # --persist even where the drop-in would not win at boot
    resume: Any = None                      # a controller.resume.Resume: its folder and finished phases
    tensorboard: bool = False               # log the search (and PPO's curves) to RUN_DIR/tensorboard
    remember: bool = True                   # note the run in the user's history (a benchmark's thousands: not)


class Status:
    """What a run is doing, kept from its events: the phase, evaluations against the budget, the best
    single sample so far (unverified), and the verdict once there is one."""

    def __init__(self, budget: int) -> None:
        self._lock = threading.Lock()
        self.state = "running"
        self.phase = "starting"
        self.detail = ""
        self.budget = budget
        self.evaluations = 0
        self.benchmarks = 0
        self.best: dict[str, Any] | None = None
        self.messages: list[str] = []
        self.result: RunResult | None = None
        self.error: str | None = None

    def update(self, event: Event) -> None:
        with self._lock:
            if event.kind == "phase":
                self.phase, self.detail = event.data["name"], event.data.get("detail", "")
            elif event.kind == "trial":
                self._trial(event.data)
            elif event.kind == "message":
                self.messages = (self.messages + [event.data["text"]])[-20:]
            elif event.kind in ("done", "cancelled", "failed"):
                self.state = {"done": "finished", "cancelled": "cancelled", "failed": "failed"}[event.kind]
                self.error = event.data.get("error")

    def _trial(self, t: dict[str, Any]) -> None:
        self.benchmarks += 1
        if t["phase"] != "search":
            return
        self.evaluations += 1
        pct = t.get("change_pct")
        if t.get("error") is None and pct is not None and (self.best is None or pct > self.best["change_pct"]):
            self.best = {"host": t["host"], "values": t["values"], "raw": t["raw"], "change_pct": pct,
                         "verified": False}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"state": self.state, "phase": self.phase, "detail": self.detail,
                                   "evaluations": self.evaluations, "budget": self.budget,
                                   "benchmarks": self.benchmarks, "best_so_far": self.best,
                                   "messages": list(self.messages)}
            if self.result is not None:
                v = self.result.verification
                out.update(verdict=self.result.verdict, success=self.result.success,
                           verification=v.model_dump() if v is not None else None,
                           run_dir=self.result.run_dir)
            if self.error:
                out["error"] = self.error
            return out


class Job:
    """A run on a connected fleet; the caller connects it before and closes it after."""

    def __init__(self, request: JobRequest, fleet: Fleet) -> None:
        self.request = request
        self.fleet = fleet
        self.cancelled = threading.Event()
        self.status = Status(request.options.budget)
        self._subscribers: list[Callable[[Event], None]] = [self.status.update]
        self.run_dir: RunDir | None = None

    # -- events
    def subscribe(self, fn: Callable[[Event], None]) -> None:
        self._subscribers.append(fn)

    def publish(self, kind: str, **data: Any) -> None:
        event = Event(kind, data)
        for fn in list(self._subscribers):
            fn(event)

    # the tuner's Reporter protocol
    def phase(self, name: str, detail: str = "") -> None:
        self.publish("phase", name=name, detail=detail)

    def trial(self, trial: Trial) -> None:
        self.publish("trial", **trial.to_dict())

    def message(self, text: str) -> None:
        self.publish("message", text=text)

    # -- control
    def cancel(self) -> None:
        """Stop the run from another thread: no evaluation starts after this one."""
        self.cancelled.set()
        self.message("cancelled: finishing the benchmarks in flight, then restoring every host")

    def folder(self) -> RunDir:
        """The run folder, made (with spec.json and plan.json) on first use."""
        if self.run_dir is None:
            req = self.request
            if req.resume is not None:
                self.run_dir = req.resume.run
            else:
                self.run_dir = RunDir.create(req.spec.workload_name, req.run_dir)
                self.run_dir.write("spec.json", req.spec.to_dict())
                if req.plan is not None:
                    self.run_dir.write("plan.json", req.plan)
            if req.remember:
                history.remember(self.run_dir.path, req.spec.workload_name)
        return self.run_dir

    def run(self, reporter: Reporter | None = None) -> RunResult:
        """The whole run; a Cancelled run returns a result whose status says so (the hosts are
        restored when the caller closes the fleet). ``reporter``: another Reporter (the live view)
        that hears everything too."""
        req = self.request
        run = self.folder()
        options = req.options
        options.cancel = self.cancelled
        hear = _Both(self, reporter) if reporter is not None else self
        try:
            data = tune(req.spec, self.fleet, run, options, hear, resume=req.resume)
        except Cancelled:
            result = RunResult(status="cancelled", workload_name=req.spec.workload_name, run_dir=str(run.path),
                               verdict="cancelled: no verified result", strategy=options.strategy,
                               budget=options.budget, seed=options.seed, evaluations=self.status.evaluations)
            result.write(run.path)
            self.status.result = result
            if req.remember:
                history.remember(run.path, req.spec.workload_name, result)
            self.publish("cancelled", run_dir=str(run.path))
            return result
        except TunefleetError as e:
            self.publish("failed", error=str(e))
            raise
        finally:
            run.close()
        result = self._finish(data, run)
        self.publish("done", run_dir=str(run.path), success=result.success, verdict=result.verdict)
        return result

    def _finish(self, data: dict[str, Any], run: RunDir) -> RunResult:
        """Keep or persist the winner as asked, write result.json and report.html."""
        req = self.request
        self.publish("verified", verdict=data["verdict"], success=data["success"])
        persist = req.persist_file if data["success"] else None
        if req.persist_file and not persist:
            self.message("not persisting: no significant improvement to keep")
        if req.keep_best or persist:
            for line in changes(self.fleet, data):
                self.message(line)
            data["kept"] = keep(self.fleet, data)
        if persist:
            note = f"{req.spec.workload_name}, run {run.path}"
            written = self.fleet.map(lambda h: h.request("persist", {"values": data["best_config"], "path": persist,
                                                                     "note": note, "force": req.force}),
                                     in_run(self.fleet, data))
            data["persisted"] = {n: o.value["path"] if o.ok else f"error: {o.error}" for n, o in written.items()}
            data["persist_overrides"] = {n: o.value.get("overrides", {}) for n, o in written.items() if o.ok}
        result = RunResult.model_validate(data)
        result.write(run.path)
        self.status.result = result
        write_report(run.path, self.message)
        if req.remember:
            history.remember(run.path, req.spec.workload_name, result)
        return result


class _Both:
    """The job's events and another reporter (the live view), from one Reporter."""

    def __init__(self, job: Job, other: Reporter) -> None:
        self.job, self.other = job, other

    def phase(self, name: str, detail: str = "") -> None:
        self.job.phase(name, detail)
        self.other.phase(name, detail)

    def trial(self, trial: Trial) -> None:
        self.job.trial(trial)
        self.other.trial(trial)

    def message(self, text: str) -> None:
        self.job.message(text)
        self.other.message(text)


def in_run(fleet: Fleet, result: dict[str, Any]) -> list[str]:
    """The hosts still in the run at its end: a dropped one (lost, failing, or changed by someone
    else) gets nothing kept or persisted."""
    return [n for n in fleet.hosts if n not in (result.get("dropped") or {})]


def changes(fleet: Fleet, result: dict[str, Any]) -> list[str]:
    """current -> new for every host and knob, before anything is kept."""
    out = []
    for name in in_run(fleet, result):
        knobs = fleet.hosts[name].facts.get("knobs") or {}
        moved = [f"{k} {(knobs.get(k) or {}).get('value') or '?'} -> {v}" for k, v in result["best_config"].items()
                 if (knobs.get(k) or {}).get("value") != v]
        out.append(f"{name}: " + (", ".join(moved) if moved else "already on the best configuration"))
    return out


def keep(fleet: Fleet, result: dict[str, Any]) -> dict[str, Any]:
    """Apply the winner again on every host still in the run (until reboot): what each applied."""
    hosts = in_run(fleet, result)
    applied = fleet.map(lambda h: h.request("apply", {"values": result["best_config"]}), hosts)
    return {n: o.value["applied"] if o.ok else str(o.error) for n, o in applied.items()}


def write_report(run_dir: Path, say: Callable[[str], None]) -> None:
    """report.html beside result.json; a failure here must not hide the result the run measured."""
    try:
        htmlreport.write_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the run is done and the hosts restored: say it, carry on
        say(f"could not write report.html ({type(e).__name__}: {e}); `tunefleet report {run_dir}` retries")
