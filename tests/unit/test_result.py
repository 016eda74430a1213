"""result.json as a typed, versioned record: today's runs and the folders of earlier versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.errors import UserError
from controller.result import SCHEMA_VERSION, RunResult, succeeded

FOLDERS = Path(__file__).resolve().parents[1] / "fixtures" / "run_folders"


@pytest.mark.parametrize("folder", sorted(p.name for p in FOLDERS.iterdir() if (p / "result.json").exists()))
def test_every_earlier_format_loads_with_its_keys_and_its_verdict(folder):
    raw = json.loads((FOLDERS / folder / "result.json").read_text())
    result = RunResult.load(FOLDERS / folder)
    assert result.schema_version == 1 and result.status == "finished"  # written before versions existed
    assert set(raw) <= set(result.to_dict())  # every key it had is still there, for readers of the old shape
    assert result.success == raw["success"] == result.succeeded  # the one rule agrees with what was recorded
    assert result.verdict == raw["verdict"] and result.best_config == raw["best_config"]


def test_success_is_a_significant_better_change_within_every_bound():
    v = {"baseline_median": 1, "best_median": 2, "change_pct": 10.0, "ci_low_pct": 5.0, "ci_high_pct": 15.0,
         "p_value": 0.01, "significant": True, "repeats": 5, "goal": "maximize"}
    assert succeeded(v) and not succeeded({**v, "significant": False}) and not succeeded({**v, "change_pct": -3.0})
    held = [{"metric": "latency_p99_ms", "max": 20, "arms": {"best": {"holds": True}}}]
    unsure = [{"metric": "latency_p99_ms", "max": 20, "arms": {"best": {"holds": None}}}]
    assert succeeded(v, held) and not succeeded(v, unsure) and not succeeded(None)


def test_a_result_is_written_whole_and_read_back(tmp_path):
    result = RunResult(workload_name="w", verdict="x", best_config={"net.core.somaxconn": "4096"})
    result.write(tmp_path)
    back = RunResult.load(tmp_path)
    assert back == result and back.schema_version == SCHEMA_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left beside it


def test_an_unreadable_result_is_one_clear_error(tmp_path):
    assert RunResult.load(tmp_path) is None  # an interrupted run has none
    (tmp_path / "result.json").write_text("{cut")
    with pytest.raises(UserError, match="not valid JSON"):
        RunResult.load(tmp_path)
