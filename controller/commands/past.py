"""Commands about past runs: runs, show, report, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from controller.commands.common import RunsDirOpt, _console, _error, _run_folder
from controller.errors import UserError


def report(
    run_name: str = typer.Argument(..., metavar="RUN", help="Run folder, or its name under the runs folder."),
    open_it: bool = typer.Option(False, "--open", help="Open the report in a web browser."),
    runs_dir: Path | None = RunsDirOpt,
) -> None:
    """Rebuild a run's report.html (one self-contained page) from its run folder."""
    from controller.htmlreport import write_report

    path = write_report(_run_folder(run_name, runs_dir))
    print(f"report: {path}")
    if open_it:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            _error(f"no web browser found; open {path} yourself")
            raise typer.Exit(1)


def runs(
    runs_dir: Path | None = typer.Option(None, "--runs-dir", help="List the runs in this folder only (default: "
                                         "every run this user started, wherever its folder is)."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
    prune: bool = typer.Option(False, "--prune", help="Forget recorded runs whose folders are gone."),
) -> None:
    """List past runs: when, what workload, how, on which hosts, and what was verified.

    Every run is recorded in an index in the user's data folder (~/.local/share/tunefleet/runs.jsonl,
    beside the policy store), so runs made with --run-dir anywhere are listed too."""
    from controller import history

    gone: list[str] = []
    if runs_dir is not None:
        found = history.list_runs(runs_dir)
    else:
        found, gone = history.every_run()
        if prune and gone:
            history.prune()
    if as_json:
        gone_rows = [] if prune else [{"run": g, "status": "gone"} for g in gone]
        print(json.dumps([r.summary() for r in found] + gone_rows, indent=2))
        return
    if not found:
        _console().print(f"no runs in {runs_dir}" if runs_dir else
                         f"no runs recorded in {history.index_path()} or found in {history.DEFAULT_ROOT}")
    else:
        history.print_runs(_console(), found)
    if gone and not prune:
        _console().print(f"{len(gone)} recorded run folder(s) are gone (moved or deleted): {', '.join(gone[:3])}"
                         + (" ..." if len(gone) > 3 else "") + "; `tunefleet runs --prune` forgets them")
    elif gone:
        _console().print(f"forgot {len(gone)} run folder(s) that are gone")


def show(
    run_name: str = typer.Argument(..., metavar="RUN", help="Run folder, or its name under the runs folder."),
    runs_dir: Path | None = RunsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the result JSON."),
) -> None:
    """Print one run's result the way `run` printed it."""
    from controller.history import load_run
    from controller.report import print_result

    record = load_run(_run_folder(run_name, runs_dir), trials=False)
    if record.result is None:
        raise UserError(f"{record.path}: the run has no result (interrupted or failed)")
    if as_json:
        print(json.dumps(record.as_dict(), indent=2))
    elif record.result.cancelled:
        _console().print(f"{record.path}: cancelled after {record.result.evaluations} evaluations; no verified result")
    else:
        print_result(_console(), record.as_dict())


def export(
    run_name: str = typer.Argument(..., metavar="RUN", help="Run folder, or its name under the runs folder."),
    fmt: str = typer.Option(..., "--format", "-f", help="sysctl.d, tuned, ansible, shell or json."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here (tuned: a profile directory) "
                                       "instead of printing."),
    include: str | None = typer.Option(None, "--include", help="tuned: the profile the hosts run today, to build on "
                                       "(default: the one the hosts reported, if any)."),
    force: bool = typer.Option(False, "--force", help="Export a result that is not a verified improvement, and "
                               "replace an existing --output."),
    runs_dir: Path | None = RunsDirOpt,
) -> None:
    """Write a run's verified best configuration as a sysctl.d drop-in, TuneD profile, Ansible playbook,
    shell script or JSON."""
    from controller import export as exporter
    from controller.history import load_run

    record = load_run(_run_folder(run_name, runs_dir), trials=False)
    text = exporter.render(record, fmt, force=force, include=include or exporter.current_profile(record))
    if output is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {exporter.write(text, fmt, output, overwrite=force)}", file=sys.stderr)
