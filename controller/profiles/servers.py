"""Profiles in servers.yaml's shape: the shipped server documentation's settings, and a user's
YAML file. A sysctl is ``name: value`` or ``name: {value, why, from}``, where ``from`` names one of
the entry's references and ``why`` quotes the sentence the value comes from; settings a sysctl run
cannot reproduce go under ``not_sysctl``, sysctls a source names without a value under ``unset``.
"""

from __future__ import annotations

from typing import Any

from controller.profiles.model import Profile
from controller.profiles.tunedconf import ProfileError
from node_agent.protocol import is_sysctl_name, normalize_value

ENTRY_FIELDS = {"summary", "references", "sysctl", "not_sysctl", "unset", "notes"}


def server_profiles(data: object, where: str) -> list[Profile]:
    """Profiles in servers.yaml's shape (also a user's YAML file)."""
    profiles = data.get("profiles") if isinstance(data, dict) else None
    if not isinstance(profiles, dict) or not profiles:
        raise ProfileError(f"{where}: expected `profiles:` mapping names to {{summary, references, sysctl, ...}}")
    return [server_profile(str(n), e, where) for n, e in profiles.items()]


def server_profile(name: str, entry: object, where: str) -> Profile:
    """One servers.yaml-shaped entry as a Profile."""
    at = f"{where}: profiles.{name}"
    if not isinstance(entry, dict):
        raise ProfileError(f"{at}: must be a mapping of summary, references, sysctl, not_sysctl, unset, notes")
    unknown = sorted(set(entry) - ENTRY_FIELDS)
    if unknown:
        raise ProfileError(f"{at}.{unknown[0]}: unknown field (known: {', '.join(sorted(ENTRY_FIELDS))})")
    refs = entry.get("references") or {}
    if not isinstance(refs, dict):
        raise ProfileError(f"{at}.references: must map a short key to {{title, url, version, file}}")
    values: dict[str, str] = {}
    modifiers: dict[str, str] = {}
    why: dict[str, str] = {}
    used: list[str] = []
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


def _mapping(value: object, at: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProfileError(f"{at}: must be a mapping")
    return value


def _why(item: dict[str, Any], refs: dict[str, Any], at: str, key: str | None, why: dict[str, str],
         used: list[str]) -> None:
    ref = item.get("from")
    if ref is not None and ref not in refs:
        raise ProfileError(f"{at}.from: {ref!r} is not one of references ({', '.join(refs) or 'none given'})")
    if ref:
        used.append(ref)
    if key is not None and item.get("why"):
        why[key] = " ".join(str(item["why"]).split())
