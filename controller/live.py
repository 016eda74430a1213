"""The live view of a tuning run: the phase under way (baseline, search, confirm, verify) with its
benchmarks done and time spent, progress toward the budget, each host's last and best reward,
failures. A rich Live panel on a terminal; plain lines otherwise (CI logs, pipes), one per phase,
and with verbose one per evaluation."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from controller.learn.evaluation import Trial

if TYPE_CHECKING:
    from rich.live import Live


class LiveReporter:
    def __init__(self, console, hosts: list[str], budget: int, goal: str, unit: str, verbose: bool = False):
        self.console = console
        self.budget = budget
        self.goal = goal
        self.unit = unit
        self.phase_name = "starting"
        self.detail = ""
        self.started = self.phase_started = time.monotonic()
        self.phase_done = 0
        self.verbose = verbose
        self.rows: dict[str, dict[str, Any]] = {
            h: {"last": None, "best": None, "raw": None, "evals": 0, "fail": 0, "note": ""} for h in hosts}
        self.search_done = 0
        self._lock = threading.Lock()
        self._live: Live | None = None

    # -- Reporter protocol
    def phase(self, name: str, detail: str = "") -> None:
        self._phase_done()
        with self._lock:
            self.phase_name, self.detail = name, detail
            self.phase_started, self.phase_done = time.monotonic(), 0
        self._print(f"[bold]{name}[/]: {detail}")
        self._refresh()

    def trial(self, t: Trial) -> None:
        with self._lock:
            self.phase_done += 1
            row = self.rows.setdefault(t.host, {"last": None, "best": None, "raw": None, "evals": 0, "fail": 0,
                                                "note": ""})
            if t.phase == "search":
                self.search_done += 1
                row["evals"] += 1
                if t.ok and t.change_pct is not None:  # percent change of the raw metric, + = better
                    row["last"] = t.change_pct
                    if row["best"] is None or t.change_pct > row["best"]:
                        row["best"] = t.change_pct
                else:
                    row["fail"] += 1
                    row["note"] = (t.error or "")[:60]
            if t.ok:
                row["raw"] = t.raw
        if self.verbose:  # above the live panel, or a plain line
            what = f"{self.unit} {t.raw:.4g}" if t.ok else f"failed: {t.error}"
            values = ", ".join(f"{k}={v}" for k, v in (t.values or {}).items()) or "original values"
            self.console.print(f"  {t.host} {t.phase}{' ' + t.label if t.label else ''}: {what} ({values})",
                               markup=False, highlight=False)
        elif self._live is None and t.phase == "search" and not t.ok:
            self.console.print(f"  {t.host}: evaluation failed: {t.error}")
        self._refresh()

    def message(self, text: str) -> None:
        self.console.print(f"[yellow]{text}[/]")

    # -- display
    def __enter__(self) -> LiveReporter:
        if self.console.is_terminal:
            from rich.live import Live

            # get_renderable: every refresh re-renders, so the elapsed time moves between trials too
            self._live = Live(console=self.console, refresh_per_second=4, transient=False,
                              get_renderable=self._render)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._phase_done()
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)
            self._live = None

    def _phase_done(self) -> None:
        """One line when a phase ends: plain output then shows each long phase finishing."""
        if self.phase_done:
            self._print(f"  {self.phase_name} done: {self.phase_done} benchmark(s) in "
                        f"{time.monotonic() - self.phase_started:.1f} s")

    def _print(self, text: str) -> None:
        if self._live is None:
            self.console.print(text)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def _render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            elapsed = time.monotonic() - self.started
            done = min(self.search_done, self.budget)
            width = 30
            filled = int(width * done / self.budget) if self.budget else 0
            head = Text(f"{self.phase_name}: {self.detail} ({self.phase_done} benchmark(s) done, "
                        f"{time.monotonic() - self.phase_started:.0f} s)\n"
                        f"search [{'#' * filled}{'.' * (width - filled)}] {done}/{self.budget} evaluations, "
                        f"{elapsed:.0f} s")  # plain Text: the bar's brackets are not markup
            table = Table(box=None, pad_edge=False)
            for col in ("host", "evals", "last change", "best change", f"last {self.unit}", "failures"):
                table.add_column(col, justify="right" if col != "host" else "left")
            for host, r in self.rows.items():
                table.add_row(host, str(r["evals"]), _pct(r["last"]), _pct(r["best"]),
                              "" if r["raw"] is None else f"{r['raw']:.4g}",
                              f"{r['fail']} {r['note']}".strip() if r["fail"] else "0")
        return Group(head, table)


def _pct(change: float | None) -> str:
    return "" if change is None else f"{change:+.1f}%"
