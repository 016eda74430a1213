"""Expert settings tunefleet ships, to compare its tuned result with and to start a search from.

An administrator who does not run tunefleet applies a TuneD profile (``tuned:throughput-performance``)
or what the server's own documentation recommends (``redis:docs``, ``postgresql:docs``). Both ship
here as data, with their source and version: ``tuned.yaml`` (TuneD's profile files, read by
``tunedconf`` with TuneD's own rules) and ``servers.yaml`` (each value with the sentence it comes
from). A ``Profile`` says which sysctls it sets (``values``, includes resolved, canonical text)
and, apart from them, every setting a sysctl run cannot reproduce (``not_sysctl``), so a report can
say which part of a profile was measured.

    from controller import profiles
    profiles.names()                           # ['postgresql:docs', 'redis:docs', 'tuned:...', ...]
    p = profiles.get("tuned:network-throughput")
    p.values                                   # {'vm.dirty_ratio': '40', ..., 'net.ipv4.tcp_rmem': '4096 87380 16777216'}
    profiles.for_workload("stream")            # [Profile('tuned:network-throughput'), ...]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from controller.profiles import tunedconf
from controller.profiles.tunedconf import ProfileError
from controller.profiles.workloads import WORKLOADS

__all__ = ["Profile", "ProfileError", "names", "get", "for_workload", "workload_keys", "load_file", "WORKLOADS"]

DATA = Path(__file__).resolve().parent


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
    conditional: tuple[dict, ...] = ()         # sysctl units that apply only on matching hardware
    unset: dict[str, str] = field(default_factory=dict)       # sysctls named without a value for every host
    notes: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()             # profiles merged into this one, in load order
    references: tuple[dict, ...] = ()          # {title, url, version, file?}

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

    def catalog_problems(self, catalog) -> list[str]:
        """Values a catalog does not know or whose safe bounds exclude them, one line each."""
        from controller.knob import parse_ints

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

    def to_dict(self) -> dict:
        return {"name": self.name, "summary": self.summary, "source": self.source, "version": self.version,
                "values": dict(self.values), "written": {n: self.written(n) for n in self.values},
                "why": dict(self.why), "origin": dict(self.origin), "not_sysctl": dict(self.not_sysctl),
                "conditional": list(self.conditional), "unset": dict(self.unset), "notes": list(self.notes),
                "includes": list(self.includes), "references": list(self.references)}


def names() -> list[str]:
    """Every shipped profile's name, sorted."""
    return sorted(_shipped())


def get(name: str) -> Profile:
    """One shipped profile; an unknown name is a ProfileError listing the known ones."""
    found = _shipped().get(name)
    if found is None:
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(names())}")
    return found


def workload_keys() -> list[str]:
    return sorted(WORKLOADS)


def for_workload(key: str) -> list[Profile]:
    """The shipped profiles an administrator would reach for with this workload, most specific first."""
    if key not in WORKLOADS:
        raise ProfileError(f"unknown workload {key!r}; known: {', '.join(workload_keys())}")
    return [get(n) for n in WORKLOADS[key]]


def load_file(path: str | Path) -> Profile:
    """A user's profile: a TuneD ``tuned.conf`` (its includes from the shipped TuneD profiles or from
    sibling profile folders) or a YAML file shaped like servers.yaml's entries."""
    from controller.profiles.userfile import load

    return load(Path(path))


# --- the shipped data -------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _shipped() -> dict[str, Profile]:
    out = {p.name: p for p in _tuned_profiles()}
    out.update({p.name: p for p in server_profiles(_yaml(DATA / "servers.yaml"), "servers.yaml")})
    return out


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def tuned_data() -> dict:
    return _yaml(DATA / "tuned.yaml")


def tuned_sections(short: str) -> dict | None:
    """The sections of a shipped TuneD profile (``throughput-performance``), or None."""
    entry = tuned_data()["profiles"].get(short)
    return None if entry is None else {s: dict(o) for s, o in entry["sections"].items()}


def _tuned_profiles() -> list[Profile]:
    from dataclasses import replace

    data = tuned_data()
    src = data["source"]
    out = []
    for short, entry in data["profiles"].items():
        p = tuned_profile(short, tuned_sections, f"tuned:{short}", "", str(src["version"]),
                          notes=tuple(entry.get("notes", ())))
        files = [src["path"].format(profile=i.removeprefix("tuned:")) for i in p.includes]
        installed = src["installed"].format(profile=short)
        source = (f"{src['name']} {src['version']}: {src['path'].format(profile=short)}"
                  + (f" (includes {', '.join(files)})" if files else "") + f"; {src['package']}: {installed}")
        ref = {"title": f"{src['name']} profile {short}", "version": str(src["version"]), "file": installed,
               "url": f"{src['repository']}/blob/{src['tag']}/{src['path'].format(profile=short)}"}
        out.append(replace(p, source=source, references=(ref,)))
    return out


def tuned_profile(short: str, lookup, name: str, source: str, version: str, label=None, notes=(),
                  references=()) -> Profile:
    """A TuneD profile resolved through ``lookup`` (name -> sections) and described as a Profile;
    ``label`` names the profiles of its chain in ``origin`` (shipped ones as ``tuned:NAME``)."""
    shipped = tuned_data()["profiles"]
    label = label or (lambda p: f"tuned:{p}")
    resolved = tunedconf.resolve(short, lookup, lambda: sorted(shipped))
    parts = tunedconf.split(resolved, name)
    origin = {k: label(p) for k, p in parts["origin"].items()}
    why = {}
    for sysctl, who in origin.items():
        text = (shipped.get(who.removeprefix("tuned:"), {}).get("why") or {}).get(sysctl)
        if who.startswith("tuned:") and text:
            why[sysctl] = text
    return Profile(name, resolved.main.get("summary", ""), source, version, parts["values"], parts["not_sysctl"],
                   why, parts["modifiers"], origin, tuple(parts["conditional"]), {},
                   tuple(parts["notes"]) + tuple(notes), tuple(label(p) for p in resolved.chain[:-1]),
                   tuple(references))


def server_profiles(data: dict, where: str) -> list[Profile]:
    """Profiles in servers.yaml's shape (also a user's YAML file)."""
    from controller.profiles.userfile import server_profile

    profiles = data.get("profiles") if isinstance(data, dict) else None
    if not isinstance(profiles, dict) or not profiles:
        raise ProfileError(f"{where}: expected `profiles:` mapping names to {{summary, references, sysctl, ...}}")
    return [server_profile(str(n), e, where) for n, e in profiles.items()]
