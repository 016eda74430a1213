"""What the MCP tools answer, as typed records: each is the tool's output schema, so a client
reads fields (`state`, `evaluations`, `verification.ci_low_pct`) instead of parsing prose.

The records carry the library's own shapes: a verification is result.json's `Comparison`, a
finished run's record is `RunResult` itself, a restore is the agents' own report.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from controller.result import Comparison

RunState = Literal["planning", "connecting", "checking", "running", "cancelling", "finished", "cancelled", "failed"]


class Workload(BaseModel):
    key: str = Field(description="What to pass as the goal to plan or start_run to get this workload.")
    name: str
    description: str


class Workloads(BaseModel):
    workloads: list[Workload]


class Plan(BaseModel):
    """A validated spec and why: what plan.json holds."""

    spec: dict[str, Any] = Field(description="The tuning spec: benchmark, reward, knobs and their ranges.")
    benchmark: dict[str, Any] = Field(description="The exact argv the agents exec (no shell), where, and who wrote it.")
    strategist: str | None = None
    workload: str | None = None
    reason: str | None = None
    rationale: dict[str, Any] = Field(default_factory=dict, description="Why each knob is in the spec.")
    warnings: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    left_out: dict[str, Any] = Field(default_factory=dict, description="Knobs the planner left out, and why.")
    managed: dict[str, list[str]] = Field(default_factory=dict,
                                          description="Per host: what else (files, TuneD, daemons) sets these knobs.")


class HostCheck(BaseModel):
    """One host as `tunefleet check --json` shows it."""

    model_config = {"extra": "allow"}

    name: str
    address: str
    ok: bool
    error: str | None = None
    kernel: str | None = None
    shares_kernel_with: list[str] = Field(default_factory=list)
    rtt_ms: float | None = None
    managed: list[str] = Field(default_factory=list)
    lacks: dict[str, str] = Field(default_factory=dict, description="Catalog knobs this host lacks, and why.")


class CheckReport(BaseModel):
    hosts: list[HostCheck]
    seconds: float


class HostEntry(BaseModel):
    """How one inventory host is reached (no connection is made)."""

    model_config = {"extra": "allow"}

    name: str
    host: str
    port: int | None = None
    user: str | None = None
    groups: list[str] = Field(default_factory=list)


class Hosts(BaseModel):
    hosts: list[HostEntry]


class HostRestore(BaseModel):
    """What one host's agent put back: knob -> original value, and what it could not."""

    restored: dict[str, str] = Field(default_factory=dict)
    unchanged: dict[str, str] = Field(default_factory=dict, description="Already on the original: not written.")
    failed: dict[str, Any] = Field(default_factory=dict, description="Knob -> the error; still journaled on the host.")
    foreign: dict[str, Any] = Field(default_factory=dict,
                                    description="Knobs someone else changed during the run: left as they set them.")
    left: list[str] = Field(default_factory=list, description="Knobs still changed (journaled on the host).")
    error: str | None = Field(default=None, description="The host could not be reached or did not answer.")


class RestoreReport(BaseModel):
    hosts: dict[str, HostRestore]
    clean: bool = Field(description="Every host answered and nothing is left changed.")


class RunStarted(BaseModel):
    run_id: str
    state: RunState
    hosts: str
    budget: int | None = Field(default=None,
                               description="None until a goal is planned (the spec's default then applies).")
    strategy: str
    next: str = Field(description="What to call next.")


class BestSoFar(BaseModel):
    host: str
    values: dict[str, str]
    raw: float | None = None
    change_pct: float | None = Field(default=None,
                                     description="Against that host's baseline; one sample, not verified.")
    verified: bool = False


class RunStatus(BaseModel):
    run_id: str
    state: RunState
    phase: str = Field(description="planning, connecting, checking, setup, baseline, search, confirm, verify.")
    detail: str = ""
    evaluations: int = Field(default=0, description="Search evaluations done, across the fleet.")
    budget: int | None = None
    benchmarks: int = Field(default=0, description="Every benchmark run so far, baseline and verification included.")
    best_so_far: BestSoFar | None = None
    verdict: str | None = None
    success: bool | None = Field(default=None, description="A verified, significant improvement within every bound.")
    verification: Comparison | None = Field(default=None,
                                            description="Original vs best: change and its 95% CI, in percent.")
    run_dir: str | None = None
    error: str | None = None
    messages: list[str] = Field(default_factory=list, description="The run's last messages.")
    restore: RestoreReport | None = Field(default=None, description="Once the run is over: what every host put back.")
    seconds: float = Field(default=0.0, description="Since start_run.")
    events: int = Field(default=0,
                        description="Events the run has published so far (watch_run's since= resumes after them).")


class RunRow(BaseModel):
    """One past run, as `tunefleet runs --json` lists it."""

    model_config = {"extra": "allow"}

    run: str
    status: str
    time: str | None = None
    workload: str | None = None
    strategy: str | None = None
    hosts: list[str] = Field(default_factory=list)
    budget: int | None = None
    verdict: str | None = None
    verified_change_pct: float | None = None
    significant: bool = False
    success: bool = False


class Runs(BaseModel):
    runs: list[RunRow]


class Report(BaseModel):
    summary: str = Field(description="The run's result as `tunefleet show` prints it.")
    report_html: str = Field(description="Path of the self-contained HTML report, rebuilt from the run folder.")


class Export(BaseModel):
    format: str
    text: str = Field(description="The file's content; nothing is written or applied.")
