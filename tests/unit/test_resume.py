"""Replaying a run folder into the strategies (controller/resume.py) on the simulated fleet.

A killed run is its folder as the kill left it: trials.jsonl is flushed line by line, so cutting an
uninterrupted run's file after N search lines (and removing result.json) is the state a kill -9
after the N-th evaluation leaves behind.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from controller.errors import UserError
from controller.learn.simfleet import member, sim_fleet
from controller.resume import Resume
from controller.runs import RunDir
from controller.tuner import RunOptions, tune
from tests.unit.test_cli_conventions import cli


def _run(m, path, strategy, budget, resume=None):
    run = resume.run if resume else RunDir.create(m.spec().workload_name, path)
    run.write("spec.json", m.spec().to_dict())  # as `tunefleet run` does
    try:
        options = RunOptions(strategy=strategy, budget=budget, seed=7, verify_repeats=2,
                             invocation={"hosts": "sim", "limit": None})
        result = tune(m.spec(), sim_fleet(m, 3, seed=2), run, options, resume=resume)
        run.write("result.json", result)
    finally:
        run.close()
    return result


def _killed_copy(src, dst, search_lines):
    """The run folder as a kill after `search_lines` search evaluations leaves it."""
    shutil.copytree(src, dst)
    (dst / "result.json").unlink()
    kept, searched = [], 0
    for line in (src / "trials.jsonl").read_text().splitlines():
        phase = json.loads(line)["phase"]
        if phase != "baseline":
            if phase != "search" or searched == search_lines:
                break
            searched += 1
        kept.append(line + "\n")
    (dst / "trials.jsonl").write_text("".join(kept))
    return dst


def _search_values(path):
    return Counter(json.dumps(t["values"], sort_keys=True) for t in RunDir(path).trials() if t["phase"] == "search")


def test_random_resumes_at_its_seeds_position(tmp_path):
    """The resumed run draws the candidates the uninterrupted run drew, none twice, none new."""
    m = member(3, 3)
    _run(m, tmp_path / "whole", "random", 12)
    killed = _killed_copy(tmp_path / "whole", tmp_path / "killed", 7)  # mid-round: 2 rounds of 3, and one
    result = _run(m, None, "random", 12, resume=Resume.load(killed))
    assert result["resumed"]["from_phase"] == "search" and result["resumed"]["evaluations_replayed"] == 7
    assert result["evaluations"] == 12
    assert _search_values(killed) == _search_values(tmp_path / "whole")
    baselines = Counter(t["phase"] for t in RunDir(killed).trials())["baseline"]
    assert baselines == 3 * m.spec().baseline_repeats  # not measured again


def test_bo_study_is_told_every_recorded_search_trial(tmp_path, monkeypatch):
    from controller.learn import bo

    studies = []

    class Spy(bo.BoxStudy):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            studies.append(self)

    monkeypatch.setattr(bo, "BoxStudy", Spy)
    m = member(3, 3)
    _run(m, tmp_path / "whole", "bo", 12)
    killed = _killed_copy(tmp_path / "whole", tmp_path / "killed", 5)
    recorded = [t for t in RunDir(killed).trials() if t["phase"] == "search"]
    studies.clear()
    result = _run(m, None, "bo", 12, resume=Resume.load(killed))
    assert result["evaluations"] == 12 and sum(_search_values(killed).values()) == 12
    study = studies[0].study
    told = [(np.round([tr.params[bo._param(i)] for i in range(3)], 6).tolist(), tr.value) for tr in study.trials]
    for t in recorded:
        point = np.round(np.clip(m.spec().to_unit(t["values"]), -1, 1), 6).tolist()
        assert [point, pytest.approx(t["reward"])] in [[p, v] for p, v in told]
    assert len(study.trials) >= len(recorded) + 7  # then the 7 evaluations the budget had left


def test_a_run_killed_after_its_search_measures_only_the_rest(tmp_path):
    m = member(3, 3)
    _run(m, tmp_path / "whole", "random", 6)
    killed = _killed_copy(tmp_path / "whole", tmp_path / "killed", 6)
    result = _run(m, None, "random", 6, resume=Resume.load(killed))
    phases = Counter(t["phase"] for t in RunDir(killed).trials())
    whole = Counter(t["phase"] for t in RunDir(tmp_path / "whole").trials())
    assert result["resumed"]["from_phase"] == "confirm" and phases["search"] == 6
    # the baseline was taken from the folder, not measured again; confirmation and verification ran
    assert phases["baseline"] == whole["baseline"] == 3 * m.spec().baseline_repeats
    assert result["evaluations"] == 6 and result["resumed"]["evaluations_replayed"] == 6
    assert phases["verify"] == whole["verify"] and result["verification"] is not None


def test_refusals(tmp_path):
    m = member(3, 3)
    _run(m, tmp_path / "whole", "random", 3)
    with pytest.raises(UserError, match="complete already"):
        Resume.load(tmp_path / "whole")
    with pytest.raises(UserError, match="no such folder"):
        Resume.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a resumable run folder"):
        Resume.load(tmp_path / "empty")
    chat = _killed_copy(tmp_path / "whole", tmp_path / "chat", 1)
    (chat / "options.json").write_text(json.dumps({"strategy": "random", "budget": 3}))  # as tune() alone writes it
    with pytest.raises(UserError, match="not started by `tunefleet run`"):
        Resume.load(chat)


def test_a_trials_file_cut_mid_line_is_repaired_and_said(tmp_path):
    """SIGKILL in the middle of an append leaves half a line: --resume drops it (one note), cuts the
    file back to its last complete line, and the resumed run appends whole lines after it."""
    m = member(3, 3)
    _run(m, tmp_path / "whole", "random", 12)
    killed = _killed_copy(tmp_path / "whole", tmp_path / "killed", 7)
    complete = (killed / "trials.jsonl").read_bytes()
    eighth = [line for line in (tmp_path / "whole" / "trials.jsonl").read_bytes().splitlines()
              if json.loads(line)["phase"] == "search"][7]
    (killed / "trials.jsonl").write_bytes(complete + eighth[: len(eighth) // 2])  # the kill, mid-write

    resume = Resume.load(killed)
    assert len(resume.notes) == 1 and "partial line" in resume.notes[0], resume.notes
    assert f"{len(eighth) // 2} bytes" in resume.notes[0]
    assert (killed / "trials.jsonl").read_bytes() == complete
    assert len(resume.of("search")) == 7
    assert Resume.load(killed).notes == []  # nothing left to repair
    result = _run(m, None, "random", 12, resume=resume)
    assert result["evaluations"] == 12
    phases = [json.loads(line)["phase"] for line in (killed / "trials.jsonl").read_text().splitlines()]
    assert phases.count("search") == 12


def test_a_line_broken_before_the_last_is_still_refused(tmp_path):
    m = member(3, 3)
    _run(m, tmp_path / "whole", "random", 6)
    killed = _killed_copy(tmp_path / "whole", tmp_path / "killed", 3)
    lines = (killed / "trials.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"
    (killed / "trials.jsonl").write_text("".join(lines))
    with pytest.raises(UserError, match="trials.jsonl cannot be read"):
        Resume.load(killed)


def test_resume_refuses_options_that_change_the_run_and_says_the_others(tmp_path):
    """Options given with --resume are checked against options.json, never silently replaced:
    one that changes what the run measures or leaves behind is refused in one line naming it;
    the same value, or one that only changes how hosts are reached, goes on (and is said)."""
    m = member(3, 3)
    _run(m, tmp_path / "whole", "random", 6)
    killed = _killed_copy(tmp_path / "whole", tmp_path / "killed", 3)
    options = json.loads((killed / "options.json").read_text())
    options.update(hosts=str(tmp_path / "no-inventory.yml"), catalog=None, ssh_config=None, workers="threads",
                   keep_best=False, persist_file=None, tensorboard=False, heartbeat_timeout=30.0)  # as `run` writes
    (killed / "options.json").write_text(json.dumps(options))

    for args, named in ((["--verify-repeats", "3"], "--verify-repeats 3 (the run was started with 2)"),
                        (["--keep-best"], "--keep-best (the run was started without it)"),
                        (["--persist"], "--persist (the run was started without it)"),
                        (["--confirm-top", "0"], "--confirm-top 0 (the run was started with 3)"),
                        (["--seed", "0"], "--seed 0 (the run was started with 7)"),
                        (["--budget", "6", "--strategy", "bo"], "--strategy bo (the run was started with random)"),
                        (["--run-dir", str(tmp_path / "x")], "--run-dir")):
        p = cli("run", "--resume", str(killed), *args)
        assert p.returncode != 0 and "Traceback" not in p.stderr
        assert p.stderr.strip().splitlines() == [
            f"tunefleet: error: --resume continues the run as it was started: {named} cannot change it"], p.stderr

    # the run's own values are no change; a new heartbeat bound is taken and said (then the missing
    # inventory stops it, before any host is touched)
    p = cli("run", "--resume", str(killed), "--seed", "7", "--budget", "6", "--heartbeat-timeout", "10")
    lines = p.stderr.strip().splitlines()
    assert lines[0] == "--resume: --heartbeat-timeout 10.0 (the run was started with 30.0)", p.stderr
    assert "no-inventory.yml" in lines[-1] and "cannot change" not in p.stderr
