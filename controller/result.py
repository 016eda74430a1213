"""A run's outcome as a typed, versioned record: result.json.

Written atomically, last, by the run (controller/job.py); read back by every reader (`tunefleet
runs`, `show`, `report`, report.html, `export`, the benchmarks, the MCP server). The JSON keys are
those result.json has always had, so a reader of an earlier folder, and the seed's fields
(`success`, `workload_name`, `best_reward`, `baseline_reward`, `best_config`, `improvement`,
`total_episodes`), keep their meaning; what a run adds beyond them is kept as it came (extra fields
are allowed). Folders written before the schema was versioned load as version 1.

Whether a run succeeded is decided here, once (`succeeded`): a verified, significant improvement
whose best configuration keeps every bound the spec sets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.errors import UserError
from controller.runs import write_json_atomic

SCHEMA_VERSION = 2   # 1: folders written before result.json carried schema_version and status
FILE = "result.json"


class Comparison(BaseModel):
    """A verification's verdict (controller/learn/stats.Comparison): the change is in percent,
    positive = better, with its 95% interval and the rank test's p-value."""

    model_config = ConfigDict(extra="allow")

    baseline_median: float
    best_median: float
    change_pct: float
    ci_low_pct: float
    ci_high_pct: float
    p_value: float
    significant: bool
    repeats: int
    goal: str
    verdict: str = ""


class HostResult(BaseModel):
    """One host's part: its baseline, its best single sample (unverified), its own verification."""

    model_config = ConfigDict(extra="allow")

    baseline: dict[str, Any] | None = None
    best_seen: dict[str, Any] | None = None
    evaluations: int = 0
    failures: int = 0
    dropped: str | None = None
    verification: Comparison | None = None


def succeeded(verification: Comparison | dict[str, Any] | None,
              constraints: list[dict[str, Any]] | None = None) -> bool:
    """The one rule for success: the verified change is significant and better, and the best
    configuration keeps every bound (its whole 95% interval within the limit)."""
    if verification is None:
        return False
    v = verification if isinstance(verification, Comparison) else Comparison.model_validate(verification)
    if not (v.significant and v.change_pct > 0):
        return False
    return all(((c.get("arms") or {}).get("best") or {}).get("holds") is True for c in constraints or [])


class RunResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    status: Literal["finished", "cancelled"] = "finished"
    # the seed's fields; best_reward and baseline_reward only as verified medians
    success: bool = False
    workload_name: str | None = None
    best_reward: float | None = None
    baseline_reward: float | None = None
    best_config: dict[str, str] = Field(default_factory=dict)
    improvement: float | None = None
    total_episodes: int | None = None
    # and what makes them trustworthy
    reward_metric: str | None = None
    goal: str | None = None
    verdict: str = ""
    verification: Comparison | None = None
    constraints: list[dict[str, Any]] | None = None
    arms: dict[str, dict[str, Any]] | None = None
    observed: dict[str, dict[str, float]] | None = None
    best_seen: dict[str, Any] | None = None
    strategy: str | None = None
    budget: int | None = None
    seed: int | None = None
    evaluations: int = 0
    evaluations_total: int = 0
    hosts: dict[str, HostResult] = Field(default_factory=dict)
    dropped: dict[str, str] = Field(default_factory=dict)
    rejoined: dict[str, str] = Field(default_factory=dict)
    run_dir: str | None = None
    confirm: dict[str, Any] | None = None
    importance: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return succeeded(self.verification, self.constraints)

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: every field but those a run of this kind never set (None)."""
        return self.model_dump(mode="json", exclude_none=True)

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """result.json in the run folder, atomically (a reader never sees half of it)."""
        path = Path(folder) / FILE
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """A result as written by any version: one without schema_version is version 1."""
        upgraded = dict(data)
        upgraded.setdefault("schema_version", 1)
        upgraded.setdefault("status", "finished")
        return cls.model_validate(upgraded)

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> RunResult | None:
        """The folder's result, None when it has none (an interrupted run); a UserError when
        result.json is there but unreadable."""
        path = Path(folder) / FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise UserError(f"{path}: cannot read it: {e.strerror or e}") from None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a result (a JSON object was expected)")
        return cls.from_dict(data)
