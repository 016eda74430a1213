"""The MCP server's tools as plain functions: typed arguments in, typed records out.

Each tool is a library call the command line makes too (controller/frontend.py, history,
export, the run API); this module only turns its arguments into those calls and the answers
into the records of controller/mcpserver/models.py. Nothing here knows the MCP SDK, so the
tools are tested directly and the server (controller/mcpserver/server.py) only declares them.

The safety rules are the command line's: a spec an MCP client passes in is the model's
(origin "model": a known benchmark tool, nothing destructive, setup steps only through
tunefleet-service), goes through `catalog.validate` before start_run answers, and again against
the hosts' facts before anything is applied.
"""

from __future__ import annotations

import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.errors import UserError
from controller.frontend import Reach
from controller.mcpserver import models
from controller.mcpserver.runs import Board, Launch, ServedRun

PERSIST_FILE = "/etc/sysctl.d/90-tunefleet.conf"
Tell = Callable[[float, str], Awaitable[None]]


@dataclass
class Settings:
    """What the server was started with (`tunefleet mcp` options): never chosen by the client."""

    hosts: Path | None = None          # the inventory a tool uses when the client names none
    reach: Reach = field(default_factory=Reach)
    catalog_file: Path | None = None
    runs_root: Path = Path("runs")
    model: str | None = None           # the strategist's model (None: TUNEFLEET_MODEL, the config, or built-in)


class Tools:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.board = Board()

    # -- helpers
    def _inventory(self, hosts: str | None) -> Path:
        if hosts:
            return Path(hosts).expanduser()
        if self.settings.hosts is None:
            raise UserError("name an inventory (hosts): this server was started without --hosts")
        return self.settings.hosts

    def _catalog(self):
        from controller.frontend import load_catalog

        return load_catalog(self.settings.catalog_file)

    # -- planning and the hosts (nothing changed)
    def list_workloads(self) -> models.Workloads:
        from controller.strategist.builtin import workloads

        return models.Workloads(workloads=[models.Workload(key=w.key, name=w.name, description=w.description)
                                           for w in workloads()])

    def plan(self, goal: str, hosts: str | None = None, limit: str | None = None) -> models.Plan:
        from controller import conflicts
        from controller.frontend import host_facts, make_plan, origin, plan_record
        from controller.gate import validate

        catalog = self._catalog()
        facts = None
        if hosts or self.settings.hosts:
            facts = host_facts(self._inventory(hosts), limit, self.settings.reach, knobs=catalog.names())
        spec, chosen = make_plan(goal, None, facts, model=self.settings.model, catalog=catalog)
        validate(spec, catalog, facts, origin=origin(chosen))
        managed = {n: conflicts.host_lines(f.get("managed") or {}, spec.knob_names) for n, f in (facts or {}).items()}
        return models.Plan(**plan_record(spec, chosen), managed=managed)

    def check(self, hosts: str | None = None, limit: str | None = None) -> models.CheckReport:
        from controller.frontend import check

        rows, seconds = check(self._inventory(hosts), limit, self.settings.reach)
        return models.CheckReport(hosts=[models.HostCheck.model_validate(r) for r in rows], seconds=round(seconds, 3))

    def hosts(self, inventory: str | None = None, limit: str | None = None) -> models.Hosts:
        from controller.frontend import select

        return models.Hosts(hosts=[models.HostEntry.model_validate(s.as_dict())
                                   for s in select(self._inventory(inventory), limit)])

    # -- runs
    def start_run(self, goal: str | None = None, spec: dict[str, Any] | None = None, hosts: str | None = None,
                  limit: str | None = None, budget: int | None = None, strategy: str = "auto", seed: int = 0,
                  verify_repeats: int = 5, baseline_repeats: int | None = None, confirm_top: int = 3,
                  compare: list[str] | None = None, keep_best: bool = False,
                  persist: bool = False) -> models.RunStarted:
        """Checks all that can be refused without a host, then hands the run to a thread of its own."""
        from controller.frontend import profiles_to_compare, select
        from controller.gate import validate
        from controller.learn.search import STRATEGIES
        from controller.spec import TuningSpec
        from controller.tuner import RunOptions

        if (goal is None) == (spec is None):
            raise UserError("give either a goal (planned like `tunefleet run GOAL`) or a spec (as plan returns it)")
        if strategy not in STRATEGIES:
            raise UserError(f"strategy {strategy}: unknown (choose from {', '.join(STRATEGIES)})")
        inventory = self._inventory(hosts)
        select(inventory, limit)  # a bad inventory or limit fails before anything else
        catalog = self._catalog()
        checked = None
        if spec is not None:
            checked = TuningSpec.from_dict(spec, "spec")
            validate(checked, catalog, origin="model")  # a client's spec is a model's: the strictest rules
        options = RunOptions(strategy=strategy, seed=seed, verify_repeats=verify_repeats,
                             baseline_repeats=baseline_repeats, confirm_top=confirm_top, catalog=catalog,
                             compare=tuple(profiles_to_compare(compare or [], None)) if checked is not None else (),
                             invocation={"hosts": str(inventory.resolve()), "limit": limit, "front_end": "mcp"})
        launch = Launch(hosts=inventory, limit=limit, reach=self.settings.reach, catalog=catalog,
                        runs_root=self.settings.runs_root, options=options, spec=checked, goal=goal,
                        model=self.settings.model, budget=budget, keep_best=keep_best or persist,
                        persist_file=PERSIST_FILE if persist else None, compare=list(compare or []))
        run = self.board.start(launch)
        return models.RunStarted(run_id=run.id, state=run.state, hosts=str(inventory), budget=budget,
                                 strategy=strategy, next=f"run_status or watch_run with run_id {run.id}")

    def run_status(self, run_id: str) -> models.RunStatus:
        return self.board.get(run_id).status()

    async def watch(self, run_id: str, timeout: float, tell: Tell, since: int | None = None) -> models.RunStatus:
        """Follow a run until it is over or `timeout` s pass, awaiting `tell(progress, message)` at
        every phase and every benchmark recorded (so at least once per fleet round). `progress`
        counts the run's events, so it only grows; `since` (a progress value, or a status's
        `events`) picks up where the last call left off, with nothing missed in between."""
        import anyio.to_thread

        run = self.board.get(run_id)
        deadline = time.monotonic() + timeout
        seen = len(run.events) if since is None else max(0, int(since))
        while True:
            fresh = await anyio.to_thread.run_sync(run.wait, seen, min(1.0, max(0.0, deadline - time.monotonic())))
            seen += len(fresh)
            if any(e.kind in ("phase", "trial", "over") for e in fresh):
                await tell(seen, progress_line(run.status()))
            if (run.over and seen >= len(run.events)) or time.monotonic() >= deadline:
                return run.status()

    async def cancel(self, run_id: str, wait: float, tell: Tell) -> models.RunStatus:
        """Stop a run and wait (up to `wait` s) until its fleet is closed: every host restored."""
        run = self.board.get(run_id)
        run.cancel()
        return await self.watch(run_id, wait, tell)

    # -- past runs
    def _folder(self, run_id: str) -> Path:
        """A run of this server by id, a run folder, or a folder name (or unique prefix) among the
        user's runs (the history index and the runs folder)."""
        from controller import history

        served = self.board.find(run_id)
        if served is not None:
            if served.run_dir is None:
                raise UserError(f"{run_id}: the run has no folder yet ({served.state}"
                                + (f": {served.error}" if served.error else "") + ")")
            return served.run_dir
        if (Path(run_id) / "spec.json").is_file():
            return Path(run_id)
        found, _ = history.every_run(self.settings.runs_root)
        matches = [r.path for r in found if r.path.name == run_id] or \
                  [r.path for r in found if r.path.name.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UserError(f"{run_id}: matches {len(matches)} runs: " + ", ".join(m.name for m in matches[:5]))
        raise UserError(f"{run_id}: no such run (runs() lists them)")

    def runs(self) -> models.Runs:
        from controller import history

        found, gone = history.every_run(self.settings.runs_root)
        rows = [models.RunRow.model_validate(r.summary()) for r in found]
        return models.Runs(runs=rows + [models.RunRow(run=g, status="gone") for g in gone])

    def show(self, run_id: str):
        from controller.history import load_run

        record = load_run(self._folder(run_id), trials=False)
        if record.result is None:
            raise UserError(f"{record.path}: the run has no result (still running, interrupted or failed)")
        return record.result

    def report(self, run_id: str) -> models.Report:
        """The summary `tunefleet show` prints, and report.html (built when missing or older than the result)."""
        from rich.console import Console

        from controller.history import load_run
        from controller.htmlreport import write_report
        from controller.report import print_result

        folder = self._folder(run_id)
        record = load_run(folder, trials=False)
        if record.result is None:
            raise UserError(f"{folder}: the run has no result (still running, interrupted or failed)")
        text = io.StringIO()
        if record.result.cancelled:
            text.write(f"{folder}: cancelled after {record.result.evaluations} evaluations; no verified result\n")
        else:
            print_result(Console(file=text, width=120, color_system=None, highlight=False), record.as_dict())
        page = folder / "report.html"
        if not page.is_file() or page.stat().st_mtime < (folder / "result.json").stat().st_mtime:
            page = write_report(folder)
        return models.Report(summary=text.getvalue().strip(), report_html=str(page.resolve()))

    def export(self, run_id: str, fmt: str, force: bool = False) -> models.Export:
        from controller import export as exporter
        from controller.history import load_run

        record = load_run(self._folder(run_id), trials=False)
        text = exporter.render(record, fmt, force=force, include=exporter.current_profile(record))
        return models.Export(format=fmt, text=text)

    # -- the hosts' settings
    def restore(self, hosts: str | None = None, limit: str | None = None,
                unpersist: bool = False) -> models.RestoreReport:
        from controller.frontend import restore

        reports, failed = restore(self._inventory(hosts), limit, self.settings.reach,
                                  PERSIST_FILE if unpersist else None)
        out = {n: models.HostRestore(restored=r.restored, unchanged=r.unchanged, failed=r.failed, foreign=r.foreign,
                                     left=r.left) for n, r in reports.items()}
        out.update({n: models.HostRestore(error=str(e)) for n, e in failed.items()})
        return models.RestoreReport(hosts=out, clean=not failed and all(r.clean for r in reports.values()))

    def warm(self) -> None:
        """Load the run API in the background while the client connects, so the first start_run
        does not wait for the learning stack to import."""
        import threading

        def load() -> None:
            import controller.job
            import controller.learn.search  # noqa: F401

        threading.Thread(target=load, name="tunefleet-warm", daemon=True).start()

    def shutdown(self, timeout: float = 600.0) -> None:
        self.board.cancel_all(timeout)


def progress_line(s: models.RunStatus) -> str:
    """One line for a progress notification: where the run is, evaluations against the budget,
    the best single sample so far (unverified)."""
    line = f"{s.state}: {s.phase}"
    if s.budget:
        line += f", {s.evaluations}/{s.budget} evaluations"
    if s.best_so_far is not None and s.best_so_far.change_pct is not None:
        line += f", best so far {s.best_so_far.change_pct:+.1f}% on {s.best_so_far.host} (unverified)"
    if s.verdict:
        line += f"; {s.verdict}"
    if s.error:
        line += f"; {s.error}"
    return line


__all__ = ["Settings", "Tools", "ServedRun", "progress_line"]
