"""Profiles from files: a user's TuneD profile, and entries shaped like servers.yaml.

A ``tuned.conf`` (or the folder holding one) is read with TuneD's rules (tunedconf.py); its
``include=`` names a sibling profile folder first, as /etc/tuned shadows /usr/lib/tuned for TuneD,
then a TuneD profile tunefleet ships. A YAML file lists ``profiles:`` like servers.yaml, where a
sysctl is ``name: value`` or ``name: {value, why, from}``. Both end in the same checks: plain
sysctl names, none on the deny-list (node_agent/denylist.py), values as canonical text.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from controller.profiles import shipped
from controller.profiles.model import Profile
from controller.profiles.servers import server_profiles
from controller.profiles.tunedconf import ProfileError, parse
from node_agent.denylist import refusal


def load(path: Path) -> list[Profile]:
    """Every profile in ``path``; a ProfileError (one line) for anything tunefleet cannot read."""
    conf = path / "tuned.conf" if path.is_dir() else path
    if not conf.is_file():
        raise ProfileError(f"{path}: no such profile file")
    try:
        text = conf.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{conf}: cannot read the profile file: {getattr(e, 'strerror', None) or e}") from None
    if conf.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ProfileError(f"{conf}: not valid YAML ({str(e).splitlines()[0]})") from None
        found = server_profiles(data, str(conf))
    else:
        found = [_tuned_file(conf, text)]
    for p in found:
        for name in p.values:
            if why := refusal(name):
                raise ProfileError(f"{p.name}: {why}")
    return found


def _tuned_file(conf: Path, text: str) -> Profile:
    own = conf.parent.name if conf.name == "tuned.conf" else conf.stem
    root = conf.parent.parent if conf.name == "tuned.conf" else conf.parent
    mine = {own: parse(text, str(conf))}

    def lookup(name: str):
        if name in mine:
            return mine[name]
        sibling = root / name / "tuned.conf"
        if conf.name == "tuned.conf" and sibling.is_file():
            mine[name] = parse(sibling.read_text(encoding="utf-8"), str(sibling))
            return mine[name]
        return shipped.tuned_sections(name)

    def label(name: str) -> str:
        return f"file:{name}" if name in mine else f"tuned:{name}"

    src = shipped.tuned_data()["source"]
    p = shipped.tuned_profile(own, lookup, f"file:{own}", "", "", label=label)
    included = [i for i in p.includes if i.startswith("tuned:")]
    source = f"{conf}" + (f" (includes {', '.join(included)} as {src['name']} {src['version']} ships them)"
                          if included else "")
    return replace(p, source=source, version=f"{src['name']} {src['version']} rules" if included else "")
