"""The one run API on the local fleet: a run's events as they happen, its typed result on disk,
and a cancel from another thread that leaves every host as it was and the folder saying so."""

from __future__ import annotations

import json
import threading
import time

import pytest

from controller import history
from controller.fleet.fleet import ConnectOptions, Fleet
from controller.job import Job, JobRequest
from controller.result import SCHEMA_VERSION, RunResult
from controller.spec import TuningSpec
from controller.tuner import RunOptions
from tests.e2e.test_tuning import STORM, knob_values

pytestmark = pytest.mark.fleet


def connect(inventory, spec) -> Fleet:
    return Fleet.connect(inventory.select("h1,h2,h3"), ConnectOptions(knobs=tuple(spec.knob_names)))


def test_a_job_tells_every_step_and_writes_a_typed_result(inventory, tmp_path):
    spec = TuningSpec.from_dict(STORM)
    before = knob_values(inventory)
    fleet = connect(inventory, spec)
    events = []
    try:
        job = Job(JobRequest(spec, None, RunOptions(strategy="random", budget=3, seed=1, verify_repeats=2,
                                                    confirm_top=0), run_dir=tmp_path / "run"), fleet)
        job.subscribe(events.append)
        result = job.run()
    finally:
        fleet.close()
    assert knob_values(inventory) == before
    phases = [e.data["name"] for e in events if e.kind == "phase"]
    assert phases == ["baseline", "search", "verify"]
    trials = [e for e in events if e.kind == "trial"]
    assert len(trials) == result.evaluations_total == len((tmp_path / "run" / "trials.jsonl").read_text().splitlines())
    assert [e.kind for e in events][-2:] == ["verified", "done"]
    on_disk = RunResult.load(tmp_path / "run")
    assert on_disk.schema_version == SCHEMA_VERSION and on_disk.status == "finished"
    assert on_disk.success == result.success == result.succeeded and on_disk.best_config == result.best_config
    assert json.loads((tmp_path / "run" / "result.json").read_text())["workload_name"] == spec.workload_name
    assert job.status.snapshot()["state"] == "finished" and job.status.snapshot()["verdict"] == result.verdict
    assert [e["status"] for e in history.indexed() if e["path"] == str((tmp_path / "run").resolve())] == ["finished"]


def test_a_cancel_from_another_thread_stops_the_run_and_every_host_goes_back(inventory, tmp_path):
    spec = TuningSpec.from_dict(STORM)
    before = knob_values(inventory)
    fleet = connect(inventory, spec)
    job = Job(JobRequest(spec, None, RunOptions(strategy="random", budget=30, seed=1, verify_repeats=2),
                         run_dir=tmp_path / "run"), fleet)
    searching = threading.Event()
    job.subscribe(lambda e: searching.set() if e.kind == "trial" and e.data["phase"] == "search" else None)
    done: dict = {}
    worker = threading.Thread(target=lambda: done.setdefault("result", job.run()))
    worker.start()
    try:
        assert searching.wait(120), "the search never started"
        started = time.monotonic()
        job.cancel()
        worker.join(120)
        assert not worker.is_alive() and time.monotonic() - started < 60
    finally:
        restored = fleet.close()
    result = done["result"]
    assert result.status == "cancelled" and not result.success and result.evaluations < 30
    assert RunResult.load(tmp_path / "run").cancelled
    assert all(o.ok for o in restored.values()) and knob_values(inventory) == before
    assert job.status.snapshot()["state"] == "cancelled"
