"""What a profile is: the sysctls an expert setting writes, and everything else it sets.

A ``Profile`` says which sysctls it sets (``values``, includes resolved, canonical text) and, apart
from them, every setting a sysctl run cannot reproduce (``not_sysctl``), so a report can say which
part of a profile was measured. Where profiles come from: shipped.py (TuneD's files, servers.yaml),
userfile.py (a user's file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.catalog import Catalog


@dataclass(frozen=True)
class Profile:
    name: str                                  # "tuned:throughput-performance", "redis:docs"
    summary: str
    source: str                                # one line: where the settings come from
    version: str
    values: dict[str, str]                     # sysctl -> canonical text, in the order they are written
    not_sysctl: dict[str, str] = field(default_factory=dict)  # "[cpu] governor" -> "performance"
    why: dict[str, str] = field(default_factory=dict)         # sysctl or not_sysctl key -> quoted sentence
    modifiers: dict[str, str] = field(default_factory=dict)   # sysctl -> ">" (only raised) or "<" (only lowered)
    origin: dict[str, str] = field(default_factory=dict)      # sysctl -> profile (file) that set it
    conditional: tuple[dict[str, Any], ...] = ()         # sysctl units that apply only on matching hardware
    unset: dict[str, str] = field(default_factory=dict)       # sysctls named without a value for every host
    notes: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()             # profiles merged into this one, in load order
    references: tuple[dict[str, Any], ...] = ()          # {title, url, version, file?}

    def written(self, name: str) -> str:
        """A value as its source writes it: ``>2048`` for a floor."""
        return self.modifiers.get(name, "") + self.values[name]

    def to_apply(self, current: dict[str, str]) -> dict[str, str]:
        """What the profile writes on a host with these current values: a ``>`` value only where the
        current one is smaller, a ``<`` value only where it is larger (TuneD's rule)."""
        out = {}
        for name, value in self.values.items():
            op = self.modifiers.get(name)
            now = current.get(name)
            if op and now is not None:
                try:
                    new, old = int(value), int(str(now).split()[0])
                except ValueError:
                    pass  # TuneD writes the value when it cannot compare
                else:
                    if (op == ">" and new <= old) or (op == "<" and new >= old):
                        continue
            out[name] = value
        return out

    def catalog_problems(self, catalog: Catalog) -> list[str]:
        """Values a catalog does not know or whose safe bounds exclude them, one line each."""
        from controller.knob import parse_ints  # here: numpy and pydantic, which `tunefleet profiles` needs not

        problems = []
        for name, value in self.values.items():
            t = catalog.get(name)
            if t is None:
                problems.append(f"{self.name}: {name} is not in the catalog")
            elif t.kind == "choice":
                if value not in t.choices:
                    problems.append(f"{self.name}: {name} = {value} is not among {', '.join(t.choices)}")
            else:
                ints = parse_ints(value)
                if len(ints) != len(t.min) or not all(lo <= x <= hi for x, lo, hi in zip(ints, t.min, t.max)):
                    problems.append(f"{self.name}: {name} = {value} is outside the safe bounds {t.bounds_text()}")
        return problems

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "source": self.source, "version": self.version,
                "values": dict(self.values), "written": {n: self.written(n) for n in self.values},
                "why": dict(self.why), "origin": dict(self.origin), "not_sysctl": dict(self.not_sysctl),
                "conditional": list(self.conditional), "unset": dict(self.unset), "notes": list(self.notes),
                "includes": list(self.includes), "references": list(self.references)}
