"""One tunable knob of a spec and how an action in [-1, 1] maps onto its range.

- an integer knob is one dimension, rounded; ``scale: log`` maps in log space (the default when
  max/min >= 100 and min > 0, so 16..4096 spends as much of the action on 16..256 as on 256..4096);
- a vector knob (net.ipv4.tcp_rmem) gives ``min``/``max`` as lists or space-separated text of one
  length; components with min == max are fixed, every other one is a dimension, and the mapped
  components are made non-decreasing;
- a choice knob (``values``) is one dimension cut into equal bins.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["Knob", "FieldError", "parse_ints", "LOG_RATIO"]


LOG_RATIO = 100  # max/min at or above which a knob defaults to log scale


class FieldError(ValueError):
    """A problem found across fields, reported at ``path`` below the model it was found in."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path: list[str | int] = list(path.split("."))
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
    min: int | list[int] | None = None
    max: int | list[int] | None = None
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
        if self.values is not None:  # a choice knob
            return {"choices": list(self.values)}
        return {"min": self.min, "max": self.max}

    # --- mapping ------------------------------------------------------------------------------

    def to_value(self, a) -> str:
        """``dims`` floats in [-1, 1] -> canonical sysctl text (clipped, rounded, ordered)."""
        x = np.nan_to_num(np.asarray(a, dtype=np.float64).reshape(-1), nan=0.0)
        if x.size != self.dims:
            raise ValueError(f"{self.param}: takes {self.dims} action components, got {x.size}")
        u = (np.clip(x, -1.0, 1.0) + 1.0) / 2.0
        if self.values is not None:  # a choice knob
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
        if self.values is not None:  # a choice knob
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
        if self.values is not None:  # a choice knob
            return text in self.values
        try:
            ints = parse_ints(text)
        except ValueError:
            return False
        return len(ints) == len(self.lower) and all(
            lo <= v <= hi for v, lo, hi in zip(ints, self.lower, self.upper))
