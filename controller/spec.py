"""TuningSpec: what to run, what to measure, which knobs to turn and how far.

Accepts the seed's JSON config shape as is::

    {"workload_name", "reward_metric", "benchmark_command",
     "action_space": [{"param", "min", "max"}], "state_space": [{"metric", "source"}],
     "training_config": {...}}

plus optional fields (see ``TuningSpec``). Unknown extra fields are kept, so a config carrying
more than tunefleet reads still loads and round-trips through ``to_dict``.

The action space is Box[-1, 1]^action_dim. Each knob maps its slice of the action onto its range
(``Knob.to_value``) and maps current values back (``Knob.to_unit``) for observations:

- an integer knob is one dimension, rounded; ``scale: log`` maps in log space (the default when
  max/min >= 100 and min > 0, so 16..4096 spends as much of the action on 16..256 as on 256..4096);
- a vector knob (net.ipv4.tcp_rmem) gives ``min``/``max`` as lists or space-separated text of one
  length; components with min == max are fixed, every other one is a dimension, and the mapped
  components are made non-decreasing;
- a choice knob (``values``) is one dimension cut into equal bins.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controller import rewards
from controller.errors import SpecError
from controller.rewards import RewardParseError

__all__ = ["TuningSpec", "Knob", "StateMetric", "SpecError", "RewardParseError"]

Goal = Literal["maximize", "minimize"]


LOG_RATIO = 100  # max/min at or above which a knob defaults to log scale


class FieldError(ValueError):
    """A problem found across fields, reported at ``path`` below the model it was found in."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path.split(".")
        self.message = message


def parse_ints(value: Any, what: str = "value") -> list[int]:
    """``16``, ``"16"``, ``"4096 87380 6291456"``, ``[4096, "87380", 6291456.0]`` -> list of ints."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} must be an integer or a list of integers, got {value!r}")
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{what} is an empty list")
        out = []
        for v in value:
            one = parse_ints(v, what) if not isinstance(v, (list, tuple)) else []
            if len(one) != 1:
                raise ValueError(f"{what} must be a flat list of integers, got {value!r}")
            out += one
        return out
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{what} must be an integer, got {value!r}")
        return [int(value)]
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        words = value.split()
        if not words:
            raise ValueError(f"{what} is empty")
        try:
            return [int(w) for w in words]
        except ValueError:
            raise ValueError(f"{what} must be integers, got {value!r}") from None
    raise ValueError(f"{what} must be an integer or a list of integers, got {type(value).__name__}")


def _text(value: Any) -> str:
    return " ".join(str(value).split())


class Knob(BaseModel):
    """One sysctl and the range the search may give it."""

    model_config = ConfigDict(extra="allow")

    param: str = Field(min_length=1)
    min: Union[int, list[int], None] = None
    max: Union[int, list[int], None] = None
    scale: Literal["linear", "log"] | None = None
    values: list[str] | None = None
    rationale: str | None = None

    @field_validator("min", "max", mode="before")
    @classmethod
    def _bound(cls, v):
        if v is None:
            return None
        ints = parse_ints(v)
        return ints[0] if len(ints) == 1 else ints

    @field_validator("values", mode="before")
    @classmethod
    def _choices(cls, v):
        if v is None:
            return None
        if not isinstance(v, (list, tuple)) or not v:
            raise ValueError("must be a non-empty list of choices")
        out = []
        for c in v:
            if isinstance(c, bool) or not isinstance(c, (str, int)):
                raise ValueError(f"choice {c!r} must be text or an integer")
            text = _text(c)
            if not text or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
                raise ValueError(f"choice {c!r} is empty or contains control characters")
            if text in out:
                raise ValueError(f"choice {text!r} is listed twice")
            out.append(text)
        return out

    @model_validator(mode="after")
    def _check(self):
        if self.values is not None:
            if self.min is not None or self.max is not None:
                raise FieldError("values", "give either values (choices) or min/max, not both")
            self.scale = None
            return self
        for side in ("min", "max"):
            if getattr(self, side) is None:
                raise FieldError(side, "missing (required unless values are given)")
        lo, hi = self.lower, self.upper
        if len(lo) != len(hi):
            raise FieldError("max", f"has {len(hi)} components, min has {len(lo)}")
        for i, (a, b) in enumerate(zip(lo, hi)):
            if b < a:
                where = f" (component {i + 1}: {b} < {a})" if len(lo) > 1 else f" ({b} < {a})"
                raise FieldError("max", "must be >= min" + where)
        if len(lo) > 1:
            for side, vec in (("min", lo), ("max", hi)):
                if any(y < x for x, y in zip(vec, vec[1:])):
                    raise FieldError(side, "vector components must be non-decreasing")
        free = self._free()
        if self.scale is None:
            positive = bool(free) and all(lo[i] > 0 for i in free)
            wide = positive and max(hi[i] / lo[i] for i in free) >= LOG_RATIO
            self.scale = "log" if wide else "linear"
        elif self.scale == "log" and any(lo[i] <= 0 for i in free):
            raise FieldError("scale", "log scale needs min > 0")
        return self

    # --- shape ------------------------------------------------------------------------------

    @property
    def lower(self) -> list[int]:
        return [] if self.min is None else (list(self.min) if isinstance(self.min, list) else [self.min])

    @property
    def upper(self) -> list[int]:
        return [] if self.max is None else (list(self.max) if isinstance(self.max, list) else [self.max])

    @property
    def is_choice(self) -> bool:
        return self.values is not None

    @property
    def components(self) -> int:
        return 1 if self.is_choice else len(self.lower)

    def _free(self) -> list[int]:
        return [i for i, (a, b) in enumerate(zip(self.lower, self.upper)) if a != b]

    @property
    def dims(self) -> int:
        return 1 if self.is_choice else len(self._free())

    def bounds(self) -> dict:
        """What the agent re-checks before it writes (docs/protocol.md, apply)."""
        if self.is_choice:
            return {"choices": list(self.values)}
        return {"min": self.min, "max": self.max}

    # --- mapping ------------------------------------------------------------------------------

    def to_value(self, a) -> str:
        """``dims`` floats in [-1, 1] -> canonical sysctl text (clipped, rounded, ordered)."""
        x = np.nan_to_num(np.asarray(a, dtype=np.float64).reshape(-1), nan=0.0)
        if x.size != self.dims:
            raise ValueError(f"{self.param}: takes {self.dims} action components, got {x.size}")
        u = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0
        if self.is_choice:
            n = len(self.values)
            return self.values[min(int(u[0] * n), n - 1)]
        out, j = [], 0
        for lo, hi in zip(self.lower, self.upper):
            if lo == hi:
                out.append(lo)
                continue
            out.append(self._scaled(lo, hi, float(u[j])))
            j += 1
        for i in range(1, len(out)):
            out[i] = max(out[i], out[i - 1])
        return " ".join(str(v) for v in out)

    def _scaled(self, lo: int, hi: int, u: float) -> int:
        if u <= 0.0 or u >= 1.0:  # exact ends, even where floats cannot hold the integer
            return lo if u <= 0.0 else hi
        if self.scale == "log":
            raw = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            raw = lo + u * (hi - lo)
        return max(lo, min(hi, int(round(raw))))

    def to_unit(self, value: str | None) -> list[float]:
        """Current value -> its place in [-1, 1] per dimension; 0 when unknown or unreadable."""
        zeros = [0.0] * self.dims
        if value is None:
            return zeros
        text = _text(value)
        if self.is_choice:
            if text not in self.values:
                return zeros
            return [(self.values.index(text) + 0.5) / len(self.values) * 2.0 - 1.0]
        try:
            ints = parse_ints(text)
        except ValueError:
            return zeros
        if len(ints) != len(self.lower):
            return zeros
        out = []
        for i in self._free():
            lo, hi, v = self.lower[i], self.upper[i], ints[i]
            if self.scale == "log":
                u = (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) if v > 0 else 0.0
            else:
                u = (v - lo) / (hi - lo)
            out.append(float(np.clip(2.0 * u - 1.0, -1.0, 1.0)))
        return out

    def contains(self, value: str | None) -> bool:
        if value is None:
            return False
        text = _text(value)
        if self.is_choice:
            return text in self.values
        try:
            ints = parse_ints(text)
        except ValueError:
            return False
        return len(ints) == len(self.lower) and all(
            lo <= v <= hi for v, lo, hi in zip(ints, self.lower, self.upper))


class StateMetric(BaseModel):
    """A metric observed during the benchmark (the agent's names, or the seed's aliases)."""

    model_config = ConfigDict(extra="allow")

    metric: str = Field(min_length=1)
    source: str | None = None


class TuningSpec(BaseModel):
    """Required: workload_name, reward_metric, benchmark_command, action_space.

    Optional: description, state_space, training_config, reward_pattern (regex, group 1 is the
    number), reward_goal (default: the metric's own, see controller.rewards), benchmark_cwd,
    benchmark_timeout (s), baseline_repeats. Anything else is kept as given.
    """

    model_config = ConfigDict(extra="allow")

    workload_name: str = Field(min_length=1)
    reward_metric: str = Field(min_length=1)
    benchmark_command: Union[str, list[str]]
    action_space: list[Knob]
    state_space: list[StateMetric] = Field(default_factory=list)
    training_config: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None
    reward_pattern: str | None = None
    reward_goal: Goal | None = None  # filled from the metric's default when not given
    benchmark_cwd: str | None = None  # folder the benchmark runs in (sysbench fileio's test files)
    benchmark_timeout: float = Field(default=120.0, gt=0, le=24 * 3600)
    baseline_repeats: int = Field(default=3, ge=1, le=100)

    @field_validator("benchmark_command")
    @classmethod
    def _command(cls, v):
        if isinstance(v, list):
            if not v or not all(isinstance(a, str) and a for a in v):
                raise ValueError("must be a non-empty command line or a list of non-empty arguments")
        elif not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("reward_pattern")
    @classmethod
    def _pattern(cls, v):
        if v is not None:
            rewards.compile_pattern(v)
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
        return self

    # --- shape --------------------------------------------------------------------------

    @property
    def goal(self) -> str:
        return self.reward_goal or "maximize"

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
        """A flat action in [-1, 1]^action_dim -> {sysctl name: canonical text}."""
        flat = np.asarray(action, dtype=np.float64).reshape(-1)
        if flat.size != self.action_dim:
            raise ValueError(f"action has {flat.size} components, the spec has {self.action_dim}")
        out, i = {}, 0
        for knob in self.action_space:
            out[knob.param] = knob.to_value(flat[i:i + knob.dims])
            i += knob.dims
        return out

    def to_unit(self, values: dict[str, str]) -> np.ndarray:
        """Current values -> their place in [-1, 1]^action_dim (0 for a missing or unreadable knob)."""
        parts = [knob.to_unit(values.get(knob.param)) for knob in self.action_space]
        flat = [x for part in parts for x in part]
        return np.asarray(flat, dtype=np.float64)

    def parse_reward(self, stdout: str) -> float:
        return rewards.parse(self.reward_metric, stdout or "", self.reward_pattern)

    # --- I/O --------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, source: str = "spec") -> "TuningSpec":
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
    def load(cls, path: str | Path) -> "TuningSpec":
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


def _first_problem(e: ValidationError) -> str:
    """One line: the first problem as ``field.path: message`` and how many more there are."""
    errors = e.errors()
    err = errors[0]
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
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{_loc(loc) or 'spec'}: {msg}{more}"
