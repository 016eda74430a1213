"""The profiles tunefleet ships, as data with their source and version: ``tuned.yaml`` (TuneD's
profile files, read by ``tunedconf`` with TuneD's own rules) and ``servers.yaml`` (each value
with the sentence it comes from, servers.py)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from controller.profiles import tunedconf
from controller.profiles.model import Profile
from controller.profiles.servers import server_profiles

DATA = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def profiles() -> dict[str, Profile]:
    """Every shipped profile by name (read once)."""
    out = {p.name: p for p in _tuned_profiles()}
    out.update({p.name: p for p in server_profiles(_yaml(DATA / "servers.yaml"), "servers.yaml")})
    return out


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


@functools.lru_cache(maxsize=1)
def tuned_data() -> dict[str, Any]:
    return _yaml(DATA / "tuned.yaml")


def tuned_sections(short: str) -> dict[str, dict[str, str]] | None:
    """The sections of a shipped TuneD profile (``throughput-performance``), or None."""
    entry = tuned_data()["profiles"].get(short)
    return None if entry is None else {s: dict(o) for s, o in entry["sections"].items()}


def _tuned_profiles() -> list[Profile]:
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


def tuned_profile(short: str, lookup: Callable[[str], dict[str, dict[str, str]] | None], name: str, source: str,
                  version: str, label: Callable[[str], str] | None = None, notes: tuple[str, ...] = (),
                  references: tuple[dict[str, Any], ...] = ()) -> Profile:
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
