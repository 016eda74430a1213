"""TuningSpec: what to run, what to measure, which knobs to turn and how far.

Accepts the seed's JSON config shape as is::

    {"workload_name", "reward_metric", "benchmark_command",
     "action_space": [{"param", "min", "max"}], "state_space": [{"metric", "source"}],
     "training_config": {...}}

plus optional fields (see ``TuningSpec``). Unknown extra fields are kept, so a config carrying
more than tunefleet reads still loads and round-trips through ``to_dict``.

The action space is Box[-1, 1]^action_dim. Each knob maps its slice of the action onto its range
(``Knob.to_value``) and maps current values back (``Knob.to_unit``) for observations; how each
kind of knob maps is described in controller/knob.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controller import coupled, priors, rewards, statemetrics, training
from controller.errors import SpecError
from controller.knob import FieldError, Knob
from controller.rewards import RewardParseError

__all__ = ["TuningSpec", "Knob", "StateMetric", "SpecError", "RewardParseError"]

Goal = Literal["maximize", "minimize"]


class StateMetric(BaseModel):
    """A metric observed during the benchmark (the agent's names, or the seed's aliases)."""

    model_config = ConfigDict(extra="allow")

    metric: str = Field(min_length=1)
    source: str | None = None


Command = str | list[str]


def check_command(v: Command) -> Command:
    """A command line (split with shlex by the agent, never run by a shell) or an argv list."""
    if isinstance(v, list):
        if not v or not all(isinstance(a, str) and a for a in v):
            raise ValueError("must be a non-empty command line or a list of non-empty arguments")
    elif not v.strip():
        raise ValueError("must not be empty")
    return v


class Service(BaseModel):
    """The server a benchmark measures, run by the tool: started before the baseline, restarted
    before measured runs when a knob in the run takes effect only at listen() or process start
    (``restart: auto``; ``always``: before every measured run; ``never``: such knobs are refused),
    stopped at the end, also when the agent stops for any other reason."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40)
    start: Command
    stop: Command
    ready: str | None = Field(default=None, pattern=r"^[^\s:]+:\d{1,5}$")  # host:port that accepts once it is up
    restart: Literal["auto", "always", "never"] = "auto"
    timeout: float = Field(default=60.0, gt=0, le=3600)  # for each start, stop and readiness wait

    _commands = field_validator("start", "stop")(classmethod(lambda cls, v: check_command(v)))


class Constraint(BaseModel):
    """A bound on another metric the benchmark prints: ``{"metric": "latency_p99_ms", "max": 20}``."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1)
    max: float | None = None
    min: float | None = None
    pattern: str | None = None  # regex whose group 1 is the number, for a metric tunefleet does not know

    @model_validator(mode="after")
    def _check(self):
        if (self.max is None) == (self.min is None):
            raise FieldError("max", f"{self.metric}: give exactly one of max or min")
        if self.pattern is not None:
            rewards.compile_pattern(self.pattern)
        elif rewards.get(self.metric) is None:
            raise FieldError("metric", f"{self.metric!r} is not a known metric (known: "
                             f"{', '.join(rewards.known_metrics())}); or give its pattern")
        return self

    @property
    def limit(self) -> float:
        limit = self.max if self.max is not None else self.min
        assert limit is not None  # _check: exactly one of max and min
        return limit

    def holds(self, value: float) -> bool:
        return value <= self.max if self.max is not None else value >= self.limit

    def excess(self, value: float) -> float:
        """How far ``value`` is past the limit, as a log ratio (0 when it holds)."""
        import math

        if self.holds(value):
            return 0.0
        limit, value = abs(self.limit) or 1e-9, max(abs(value), 1e-9)
        return abs(math.log(value / limit))

    def describe(self) -> str:
        return f"{self.metric} {'<=' if self.max is not None else '>='} {self.limit:g}"


class Link(BaseModel):
    """An emulated long-distance link from each client toward its server (node_agent/link.py): what
    `tc netem` on the sender's egress would give, for kernels without netem."""

    model_config = ConfigDict(extra="forbid")

    delay_ms: float = Field(ge=0, le=10000)
    rate_mbit: float = Field(gt=0, le=10000)
    loss_pct: float = Field(default=0.0, ge=0, le=100)
    limit: int = Field(default=1000, ge=1, le=1_000_000)


class Peer(BaseModel):
    """A benchmark that needs a partner: each evaluated host (the client) runs the benchmark against
    another host of the fleet (its server), whose address fills ``{peer}`` in the commands. Pairs
    are ``auto`` (hosts in inventory order, two by two) or given as ``[[client, server], ...]``.
    The knob values go to both hosts of a pair; the spec's setup, service and teardown run on the
    server, its reset and warm-up on the client."""

    model_config = ConfigDict(extra="forbid")

    pairs: Literal["auto"] | list[tuple[str, str]] = "auto"
    link: Link | None = None


class TuningSpec(BaseModel):
    """Required: workload_name, reward_metric, benchmark_command, action_space.

    Optional: description, state_space, training_config, reward_pattern (regex, group 1 is the
    number), reward_goal (default: the metric's own, see controller.rewards), benchmark_cwd,
    benchmark_timeout (s), baseline_repeats, initial_candidates (expert priors every strategy
    evaluates first, see controller/priors.py). Anything else is kept as given.
    """

    model_config = ConfigDict(extra="allow")

    workload_name: str = Field(min_length=1)
    reward_metric: str = Field(min_length=1)
    benchmark_command: str | list[str]
    action_space: list[Knob]
    state_space: list[StateMetric] = Field(default_factory=list)
    training_config: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None
    reward_pattern: str | None = None
    reward_goal: Goal | None = None  # filled from the metric's default when not given
    benchmark_cwd: str | None = None  # folder the benchmark runs in (sysbench fileio's test files)
    benchmark_timeout: float = Field(default=120.0, gt=0, le=24 * 3600)
    baseline_repeats: int = Field(default=3, ge=1, le=100)
    initial_candidates: list[dict[str, Any]] = Field(default_factory=list)
    # what the run does besides the benchmark (controller/lifecycle.py)
    setup: list[Command] = Field(default_factory=list)     # once per host, before the baseline
    teardown: list[Command] = Field(default_factory=list)  # once per host at the end (also after a crash)
    reset: Command | None = None                           # before every measured run, untimed
    warmup: Command | None = None                          # after the reset, before every measured run, untimed
    step_timeout: float = Field(default=300.0, gt=0, le=24 * 3600)  # for each setup, teardown, reset and warm-up
    service: Service | None = None
    # other metrics the benchmark prints: bounded ones, and ones only reported
    constraints: list[Constraint] = Field(default_factory=list)
    report_metrics: list[str] = Field(default_factory=list)
    peer: Peer | None = None  # a client/server benchmark across pairs of hosts (controller/pairs.py)

    @field_validator("benchmark_command", "reset", "warmup")
    @classmethod
    def _command(cls, v):
        return v if v is None else check_command(v)

    @field_validator("setup", "teardown")
    @classmethod
    def _commands(cls, v):
        for i, command in enumerate(v):
            try:
                check_command(command)
            except ValueError as e:
                error = FieldError(str(i), str(e))
                error.path = [i]
                raise error from None
        return v

    @field_validator("report_metrics")
    @classmethod
    def _reported(cls, v):
        for name in v:
            if rewards.get(name) is None:
                raise ValueError(f"{name!r} is not a known metric (known: {', '.join(rewards.known_metrics())})")
        return list(dict.fromkeys(v))

    @field_validator("reward_pattern")
    @classmethod
    def _pattern(cls, v):
        if v is not None:
            rewards.compile_pattern(v)
        return v

    @field_validator("training_config")
    @classmethod
    def _training(cls, v):
        training.validate(v)  # honoured by PPO, or refused here: never ignored
        return v

    @field_validator("state_space")
    @classmethod
    def _state(cls, v):
        for index, name, problem in statemetrics.check_state_space(v):
            error = FieldError(name, problem)
            error.path = [index, name]
            raise error
        return v

    @field_validator("action_space")
    @classmethod
    def _knobs(cls, v):
        if not v:
            raise ValueError("needs at least one knob")
        return v

    @model_validator(mode="after")
    def _resolve(self):
        if self.reward_pattern is None and rewards.get(self.reward_metric) is None:
            raise FieldError("reward_metric", f"{self.reward_metric!r} is not a known metric (known: "
                             f"{', '.join(rewards.known_metrics())}); or give reward_pattern")
        if self.reward_goal is None:
            self.reward_goal = rewards.default_goal(self.reward_metric)
        if self.action_dim < 1:
            raise FieldError("action_space", "every knob is fixed (min == max): nothing to tune")
        for path, problem in priors.problems(self.initial_candidates, self.action_space)[:1]:
            error = FieldError("initial_candidates", problem)
            error.path = ["initial_candidates", *path]
            raise error
        self.initial_candidates = priors.normalized(self.initial_candidates)
        return self

    # --- shape --------------------------------------------------------------------------

    @property
    def goal(self) -> Goal:
        return self.reward_goal or "maximize"

    @property
    def observed_metrics(self) -> list[str]:
        """Metrics parsed from every run besides the reward: the constrained ones, then the reported."""
        return list(dict.fromkeys([c.metric for c in self.constraints] + self.report_metrics))

    def parse_metric(self, name: str, stdout: str) -> float:
        pattern = next((c.pattern for c in self.constraints if c.metric == name and c.pattern), None)
        return rewards.parse(name, stdout or "", pattern)

    @property
    def knob_names(self) -> list[str]:
        return [k.param for k in self.action_space]

    @property
    def action_dim(self) -> int:
        return sum(k.dims for k in self.action_space)

    def knob(self, name: str) -> Knob | None:
        return next((k for k in self.action_space if k.param == name), None)

    # --- action <-> values ----------------------------------------------------------------

    def to_values(self, action) -> dict[str, str]:
        """A flat action in [-1, 1]^action_dim -> {sysctl name: canonical text}, coupled knobs
        repaired (controller/coupled.py)."""
        flat = np.asarray(action, dtype=np.float64).reshape(-1)
        if flat.size != self.action_dim:
            raise ValueError(f"action has {flat.size} components, the spec has {self.action_dim}")
        out, i = {}, 0
        for knob in self.action_space:
            out[knob.param] = knob.to_value(flat[i:i + knob.dims])
            i += knob.dims
        return coupled.repair(out, self.action_space)  # coupled knobs stay consistent

    def to_unit(self, values: dict[str, str]) -> np.ndarray:
        """Current values -> their place in [-1, 1]^action_dim (0 for a missing or unreadable knob)."""
        parts = [knob.to_unit(values.get(knob.param)) for knob in self.action_space]
        flat = [x for part in parts for x in part]
        return np.asarray(flat, dtype=np.float64)

    def parse_reward(self, stdout: str) -> float:
        return rewards.parse(self.reward_metric, stdout or "", self.reward_pattern)

    # --- I/O --------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, source: str = "spec") -> TuningSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{source}: must be an object with workload_name, reward_metric, "
                            f"benchmark_command and action_space (got {type(data).__name__})")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise SpecError(f"{source}: {_first_problem(e)}") from None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def load(cls, path: str | Path) -> TuningSpec:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise SpecError(f"{path}: cannot read the spec file: {reason}") from None
        return cls.from_dict(parse_document(text, path), str(path))


def parse_document(text: str, path: Path) -> Any:
    """JSON or YAML, by extension, else by content; one clear line when neither parses."""
    if not text.strip():
        raise SpecError(f"{path}: the file is empty")
    is_yaml = path.suffix.lower() in (".yml", ".yaml")
    if not is_yaml:
        try:
            return json.loads(text)
        except ValueError as e:
            if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
                raise SpecError(f"{path}: not valid JSON: {e}") from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{path}: not valid YAML{where}: {problem}") from None


def _loc(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def validation_problems(e: ValidationError, root: str = "spec") -> list[str]:
    """Every problem pydantic found, one ``field.path: message`` line each, duplicates dropped."""
    out = []
    for err in e.errors():
        loc = list(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        msg = err["msg"]
        if isinstance(cause, FieldError):
            loc += cause.path
            msg = cause.message
        elif err["type"] == "missing":
            msg = "missing (required)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif msg:
            msg = msg[0].lower() + msg[1:]
        out.append(f"{_loc(loc) or root}: {msg}")
    return list(dict.fromkeys(out))


def _first_problem(e: ValidationError) -> str:
    """One line: the first problem and how many more there are."""
    problems = validation_problems(e)
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
