"""Run history read back from run folders captured from real runs, including folders a crash
cut short, through the `runs`, `show` and `report` commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controller.errors import UserError
from controller.history import list_runs, load_run, resolve_run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "run_folders"
TUNEFLEET = [sys.executable, "-m", "controller.cli"]


@pytest.fixture()
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    for name in ("connection-storm", "stream-no-significant"):
        shutil.copytree(FIXTURES / name, root / f"20261130-0400-{name}")
    cut = root / "20261130-0500-interrupted"
    shutil.copytree(FIXTURES / "connection-storm", cut)
    (cut / "result.json").unlink()
    (root / "not-a-run").mkdir()
    return root


def cli(*args, runs_dir: Path):
    return subprocess.run([*TUNEFLEET, *args], capture_output=True, text=True,
                          env={**os.environ, "TUNEFLEET_RUNS": str(runs_dir)})


def test_runs_lists_every_run_in_time_order_with_its_verdict(runs):
    found = [r.summary() for r in list_runs(runs)]
    # by when they ran (their first benchmark), not by folder name; the cut copy ran with the storm
    assert [Path(s["run"]).name for s in found] == ["20261130-0400-connection-storm", "20261130-0500-interrupted",
                                                     "20261130-0400-stream-no-significant"]
    storm, cut, stream = found
    assert storm["success"] and storm["verified_change_pct"] == pytest.approx(99.46, abs=0.01)
    assert storm["strategy"] == "random" and storm["budget"] == 9 and storm["hosts"] == ["h1", "h2", "h3"]
    assert not stream["success"] and stream["verdict"].startswith("no significant improvement")
    assert cut["verdict"].startswith("no result") and cut["workload"] == "Connection storm (accept backlog)"


def test_runs_json_and_table(runs):
    p = cli("runs", "--json", runs_dir=runs)
    assert p.returncode == 0, p.stderr
    assert [r["workload"] for r in json.loads(p.stdout)] == ["Connection storm (accept backlog)"] * 2 + [
        "Network throughput (bulk TCP transfer)"]
    table = cli("runs", runs_dir=runs).stdout
    assert "+99.5%" in table and "interrupted" in table and "not-a-run" not in table


def test_show_prints_the_result_as_run_did(runs):
    p = cli("show", "20261130-0400-conn", runs_dir=runs)  # a unique prefix is enough
    assert p.returncode == 0, p.stderr
    assert "improvement of 99.5%" in p.stdout and "net.core.somaxconn = 1469" in p.stdout
    ambiguous = cli("show", "20261130-0400", runs_dir=runs)
    assert ambiguous.returncode != 0 and "matches 2 runs" in ambiguous.stderr
    cut = cli("show", "20261130-0500-interrupted", runs_dir=runs)
    assert cut.returncode != 0 and "no result" in cut.stderr and "Traceback" not in cut.stderr


def test_report_rebuilds_the_page(runs):
    folder = runs / "20261130-0400-stream-no-significant"
    p = cli("report", str(folder), runs_dir=runs)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"report: {folder / 'report.html'}"
    assert "no significant improvement" in (folder / "report.html").read_text()


def test_a_folder_that_is_not_a_run_is_refused(runs, tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        load_run(runs / "not-a-run")
    with pytest.raises(UserError, match="no such run folder"):
        resolve_run("nothing-like-this", runs)
    p = cli("runs", "--runs-dir", str(tmp_path / "absent"), runs_dir=tmp_path / "absent")
    assert p.returncode != 0 and p.stderr.startswith("tunefleet: error:") and "Traceback" not in p.stderr


def test_runs_follow_the_user_wherever_their_folders_are(runs, tmp_path):
    """Every run is noted in the index in the user's data folder: one made with --run-dir elsewhere is
    listed too, one whose folder is gone is said to be gone, and --prune forgets it."""
    import shutil

    from controller import history
    from controller.result import RunResult

    elsewhere = tmp_path / "srv" / "tuning" / "pg-1"
    shutil.copytree(runs / "20261130-0400-stream-no-significant", elsewhere)
    doomed = tmp_path / "scratch" / "storm"
    shutil.copytree(runs / "20261130-0400-connection-storm", doomed)
    for folder in (elsewhere, doomed):
        history.remember(folder, "w")
        history.remember(folder, "w", RunResult.load(folder))
    shutil.rmtree(doomed)
    empty = tmp_path / "no-runs-here"
    listed = json.loads(cli("runs", "--json", runs_dir=empty).stdout)
    assert [r.get("run") for r in listed] == [str(elsewhere), str(doomed)]
    assert listed[1]["status"] == "gone" and listed[0]["verdict"].startswith("no significant improvement")
    assert "1 recorded run folder(s) are gone" in cli("runs", runs_dir=empty).stdout
    assert "forgot 1" in cli("runs", "--prune", runs_dir=empty).stdout
    assert [r["run"] for r in json.loads(cli("runs", "--json", runs_dir=empty).stdout)] == [str(elsewhere)]
    # the runs folder's own runs are listed beside the index's
    both = json.loads(cli("runs", "--json", runs_dir=runs).stdout)
    assert str(elsewhere) in [r["run"] for r in both] and len(both) == 4
