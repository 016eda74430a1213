"""Profiles from files: a user's TuneD profile, and entries shaped like servers.yaml.

A ``tuned.conf`` (or the folder holding one) is read with TuneD's rules (tunedconf.py); its
``include=`` names a sibling profile folder first, as /etc/tuned shadows /usr/lib/tuned for TuneD,
then a TuneD profile tunefleet ships. A YAML file lists ``profiles:`` like servers.yaml, where a
sysctl is ``name: value`` or ``name: {value, why, from}``. Both end in the same checks: plain
sysctl names, none on the deny-list (node_agent/denylist.py), values as canonical text.
"""

from __future__ import annotations

from pathlib import Path

from controller.profiles.tunedconf import ProfileError, parse
from node_agent.denylist import refusal
from node_agent.protocol import is_sysctl_name, normalize_value

ENTRY_FIELDS = {"summary", "references", "sysctl", "not_sysctl", "unset", "notes"}


def load(path: Path) -> list:
    """Every profile in ``path``; a ProfileError (one line) for anything tunefleet cannot read."""
    from controller import profiles

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
        found = profiles.server_profiles(data, str(conf))
    else:
        found = [_tuned_file(conf, text)]
    for p in found:
        for name in p.values:
            if why := refusal(name):
                raise ProfileError(f"{p.name}: {why}")
    return found


def _tuned_file(conf: Path, text: str):
    from controller import profiles

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
        return profiles.tuned_sections(name)

    def label(name: str) -> str:
        return f"file:{name}" if name in mine else f"tuned:{name}"

    src = profiles.tuned_data()["source"]
    p = profiles.tuned_profile(own, lookup, f"file:{own}", "", "", label=label)
    shipped = [i for i in p.includes if i.startswith("tuned:")]
    source = f"{conf}" + (f" (includes {', '.join(shipped)} as {src['name']} {src['version']} ships them)"
                          if shipped else "")
    from dataclasses import replace

    return replace(p, source=source, version=f"{src['name']} {src['version']} rules" if shipped else "")


def server_profile(name: str, entry, where: str):
    """One servers.yaml-shaped entry as a Profile."""
    from controller.profiles import Profile

    at = f"{where}: profiles.{name}"
    if not isinstance(entry, dict):
        raise ProfileError(f"{at}: must be a mapping of summary, references, sysctl, not_sysctl, unset, notes")
    unknown = sorted(set(entry) - ENTRY_FIELDS)
    if unknown:
        raise ProfileError(f"{at}.{unknown[0]}: unknown field (known: {', '.join(sorted(ENTRY_FIELDS))})")
    refs = entry.get("references") or {}
    if not isinstance(refs, dict):
        raise ProfileError(f"{at}.references: must map a short key to {{title, url, version, file}}")
    values, modifiers, why, used = {}, {}, {}, []
    for sysctl, item in _mapping(entry.get("sysctl"), f"{at}.sysctl").items():
        if not is_sysctl_name(sysctl):
            raise ProfileError(f"{at}.sysctl.{sysctl}: not a plain sysctl name")
        item = item if isinstance(item, dict) else {"value": item}
        raw = item.get("value")
        if raw is None or isinstance(raw, (bool, dict, list)):
            raise ProfileError(f"{at}.sysctl.{sysctl}: needs a value (a number or text)")
        text = normalize_value(str(raw))
        if len(text) > 1 and text[0] in "<>":
            modifiers[sysctl], text = text[0], text[1:].strip()
        values[sysctl] = text
        _why(item, refs, f"{at}.sysctl.{sysctl}", sysctl, why, used)
    not_sysctl = {}
    for key, item in _mapping(entry.get("not_sysctl"), f"{at}.not_sysctl").items():
        item = item if isinstance(item, dict) else {"value": item}
        not_sysctl[key] = str(item.get("value", ""))
        _why(item, refs, f"{at}.not_sysctl.{key}", key, why, used)
    unset = {}
    for sysctl, item in _mapping(entry.get("unset"), f"{at}.unset").items():
        item = item if isinstance(item, dict) else {"why": item}
        unset[sysctl] = str(item.get("why", ""))
        _why(item, refs, f"{at}.unset.{sysctl}", None, {}, used)
    references = tuple({"key": k, **v} for k, v in refs.items() if isinstance(v, dict))
    cited = [r for r in references if r["key"] in used] or references
    source = "; ".join(f"{r.get('title', r['key'])} ({r.get('url', r.get('file', ''))})" for r in cited)
    version = "; ".join(dict.fromkeys(str(r["version"]) for r in cited if r.get("version")))
    notes = entry.get("notes") or []
    if not isinstance(notes, list):
        raise ProfileError(f"{at}.notes: must be a list of lines")
    return Profile(name, str(entry.get("summary", "")), source or where, version, values, not_sysctl, why,
                   modifiers, {k: name for k in values}, (), unset, tuple(str(n) for n in notes), (), references)


def _mapping(value, at: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProfileError(f"{at}: must be a mapping")
    return value


def _why(item: dict, refs: dict, at: str, key, why: dict, used: list) -> None:
    ref = item.get("from")
    if ref is not None and ref not in refs:
        raise ProfileError(f"{at}.from: {ref!r} is not one of references ({', '.join(refs) or 'none given'})")
    if ref:
        used.append(ref)
    if key is not None and item.get("why"):
        why[key] = " ".join(str(item["why"]).split())
