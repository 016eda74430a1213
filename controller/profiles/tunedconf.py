"""TuneD profiles read the way TuneD 2.20 reads them, down to the sysctls a profile writes.

TuneD's loader (tuned/profiles/loader.py, merger.py, unit.py) reads ``tuned.conf`` with
ConfigParser (``=`` only, ``#`` inline comments, later duplicates win), loads every ``include=``
first (comma or semicolon separated, each profile once, ``-name`` only if it exists), and merges
the profiles unit by unit: a later unit's options update the earlier one's, unless it says
``replace=true`` (drop the earlier unit) or ``drop=a,b`` (remove those options first). A unit's
plugin is its ``type=`` or its section name; ``uname_regex=`` / ``cpuinfo_regex=`` make it apply
only on matching machines. The sysctl plugin then unquotes each value, expands ``${variables}``
and ``${f:function}``, and reads a leading ``>`` or ``<`` as "only if the value is larger /
smaller than the current one".

tunefleet follows those rules exactly, with two differences that are said, never guessed:
TuneD functions (``${f:...}``, ``${i:...}``) are evaluated on the host by TuneD, so a sysctl
value or an include that uses one is refused with one line; and the result is split into what a
benchmark can measure through sysctls (``values``: unconditional ``[sysctl]`` units, plus the
``vm.dirty_*`` settings that TuneD >= 2.25 moved into ``[vm]``) and everything else, which is
listed under its unit (``[cpu] governor``) so a report can say what was not measured.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.errors import UserError
from node_agent.protocol import is_sysctl_name, normalize_value

UNIT_FIELDS = ("type", "enabled", "replace", "drop", "devices", "devices_udev_regex", "cpuinfo_regex",
               "uname_regex", "script_pre", "script_post")
CONDITIONS = ("uname_regex", "cpuinfo_regex", "devices_udev_regex")
TRUE = ("True", "true", "1")
# TuneD >= 2.25 sets the dirty limits in [vm]; each is a sysctl write (tuned/plugins/plugin_vm.py)
VM_DIRTY = {"dirty_bytes": ("vm.dirty_bytes", "vm.dirty_ratio"), "dirty_ratio": ("vm.dirty_ratio", None),
            "dirty_background_bytes": ("vm.dirty_background_bytes", "vm.dirty_background_ratio"),
            "dirty_background_ratio": ("vm.dirty_background_ratio", None)}


class ProfileError(UserError):
    """A profile that cannot be read, or uses something tunefleet will not evaluate."""


@dataclass
class Unit:
    name: str
    type: str
    enabled: bool = True
    replace: bool = False
    drop: list[str] | None = None
    devices: str = "*"
    extra: dict[str, str] = field(default_factory=dict)   # devices_udev_regex, *_regex, script_pre/post
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_section(cls, name: str, section: dict[str, str]) -> Unit:
        opts = dict(section)
        drop = opts.pop("drop", None)
        return cls(name, opts.pop("type", name), opts.pop("enabled", "True") in TRUE,
                   opts.pop("replace", "False") in TRUE,
                   re.split(r"\b\s*[,;]\s*", drop) if drop is not None else None, opts.pop("devices", "*"),
                   {k: opts.pop(k) for k in UNIT_FIELDS[5:] if k in opts}, opts)

    @property
    def conditions(self) -> dict[str, str]:
        return {k: self.extra[k] for k in CONDITIONS if self.extra.get(k) is not None}


@dataclass
class Resolved:
    """One profile with its includes merged: what TuneD would load."""

    chain: list[str]                       # profiles in load order: includes first, the profile last
    main: dict[str, str]
    units: dict[str, Unit]
    variables: dict[str, str]
    origin: dict[tuple[str, str], str]     # (unit, option) -> the profile that set it last


def parse(text: str, where: str) -> dict[str, dict[str, str]]:
    """``tuned.conf`` text -> {section: {option: raw value}}, as TuneD's ConfigParser reads it; ``where``
    is the file's path (``${i:PROFILE_DIR}`` and ``script=`` are relative to its folder)."""
    parser = configparser.ConfigParser(delimiters=("=",), inline_comment_prefixes=("#",), strict=False,
                                       interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # configparser's way to keep names' case
    try:
        parser.read_string(text, where)
    except configparser.Error as e:
        first = str(e).strip().splitlines()[0]
        raise ProfileError(f"{where}: not a TuneD profile file ({first})") from None
    folder = os.path.dirname(where) if os.path.isabs(where) else ""
    sections = {}
    for s in parser.sections():
        opts = {k: re.sub(r"(?<!\\)\$\{i:PROFILE_DIR\}", folder, v) if folder else v
                for k, v in parser.items(s, raw=True)}
        if folder and opts.get("script") is not None:  # TuneD keeps a list of paths; merged lists add up
            opts["script"] = os.path.normpath(os.path.join(folder, opts["script"]))
        sections[s] = opts
    return sections


def resolve(name: str, lookup: Callable[[str], dict | None], known: Callable[[], list[str]]) -> Resolved:
    """Load ``name`` and its includes through ``lookup(name) -> sections | None`` and merge them."""
    loaded: list[tuple[str, dict[str, str], dict[str, Unit]]] = []
    seen: list[str] = []  # TuneD's processed_files: each profile is loaded once

    def load(names: list[str], by: str) -> None:
        for raw in names:
            optional = raw.startswith("-")
            pname = raw[1:] if optional else raw
            if not pname or pname in seen:
                continue
            sections = lookup(pname)
            if sections is None:
                if optional:
                    continue
                raise ProfileError(f"{by}: include={pname}: no such TuneD profile (known: {', '.join(known())})")
            seen.append(pname)
            main = dict(sections.get("main", {}))
            include = main.pop("include", None)
            if include:
                if "${" in include:
                    raise ProfileError(f"{pname}: include={include}: TuneD evaluates this on the host "
                                       "(a function or variable); name the included profile instead")
                load(re.split(r"\s*[,;]\s*", include.strip()), pname)
            units = {s: Unit.from_section(s, opts) for s, opts in sections.items() if s != "main"}
            loaded.append((pname, main, units))

    load([name], name)
    main: dict[str, str] = {}
    units: dict[str, Unit] = {}
    origin: dict[tuple[str, str], str] = {}
    for pname, pmain, punits in loaded:
        main.update(pmain)
        for uname, unit in punits.items():
            _merge_unit(units, uname, unit)
            origin = {k: v for k, v in origin.items() if k[0] != uname or k[1] in units[uname].options}
            origin.update({(uname, opt): pname for opt in unit.options})
    variables = units.pop("variables").options if "variables" in units else {}
    return Resolved([p for p, _, _ in loaded], main, units, variables, origin)


def _merge_unit(units: dict[str, Unit], name: str, new: Unit) -> None:
    """TuneD's Merger._merge_two for one unit."""
    if new.replace or name not in units:
        units[name] = Unit(new.name, new.type, new.enabled, new.replace, new.drop, new.devices, dict(new.extra),
                           dict(new.options))
        return
    old = units[name]
    old.type, old.enabled, old.devices = new.type, new.enabled, new.devices
    old.extra.update({k: v for k, v in new.extra.items() if v is not None})
    for opt in new.drop or ():
        old.options.pop(opt, None)
    script = old.options.get("script") if name == "script" else None
    old.options.update(new.options)
    if script is not None:
        old.options["script"] = f"{script} {old.options['script']}"


def expand(value: str, variables: dict[str, str], where: str) -> str:
    """Unquote and expand ``${name}`` from [variables] as TuneD does; refuse what only TuneD can evaluate."""
    text = re.sub(r'^"(.*)"$', r"\1", value)
    for _ in range(10):  # variables may refer to variables
        new = re.sub(r"(?<!\\)\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), text)
        if new == text:
            break
        text = new
    if "${" in text.replace("\\${", ""):
        what = "a TuneD function" if re.search(r"\$\{[a-z]:", text) else "a variable tunefleet cannot resolve"
        raise ProfileError(f"{where} = {value}: uses {what}, which TuneD evaluates on the host; "
                           "tunefleet does not guess its result: write the value itself")
    return text.replace("\\${", "${")


def sysctl_value(raw: str, variables: dict[str, str], where: str) -> tuple[str, str]:
    """(canonical text, modifier) of one [sysctl] value; modifier is ">" / "<" (TuneD: only if larger /
    smaller than the current value) or ""."""
    text = expand(raw, variables, where).strip()
    modifier = ""
    if len(text) > 1 and text[0] in "<>":
        modifier, text = text[0], text[1:]
    text = normalize_value(text)
    if not text:
        raise ProfileError(f"{where}: empty value")
    return text, modifier


def split(resolved: Resolved, label: str) -> dict:
    """The merged units as tunefleet describes them: sysctl values, conditional sysctls, the rest."""
    values: dict[str, str] = {}
    modifiers: dict[str, str] = {}
    origin: dict[str, str] = {}
    conditional: list[dict] = []
    not_sysctl: dict[str, str] = {}
    notes: list[str] = []
    for uname, unit in resolved.units.items():
        if not unit.enabled:
            notes.append(f"unit [{uname}] is disabled (enabled=false): TuneD does not apply it")
            continue
        if unit.type == "sysctl":
            parsed = {}
            for opt, raw in unit.options.items():
                if not is_sysctl_name(opt):
                    raise ProfileError(f"{label}: [{uname}] {opt}: not a plain sysctl name")
                parsed[opt] = sysctl_value(raw, resolved.variables, f"{label}: [{uname}] {opt}")
            if unit.conditions:
                conditional.append({"unit": uname, "when": _when(unit, resolved.variables),
                                    "values": {k: m + v for k, (v, m) in parsed.items()}})
                continue
            for opt, (text, mod) in parsed.items():
                values.pop(opt, None)  # a later unit's write comes later
                values[opt], origin[opt] = text, resolved.origin.get((uname, opt), "")
                modifiers.pop(opt, None)
                if mod:
                    modifiers[opt] = mod
            continue
        for opt, raw in unit.options.items():
            key = f"[{uname}] {opt}"
            if unit.type == "vm" and opt in VM_DIRTY and not unit.conditions:
                name, ratio = VM_DIRTY[opt]
                text = expand(raw, resolved.variables, f"{label}: {key}").strip()
                if ratio and text.endswith("%"):
                    name, text = ratio, text[:-1].strip()
                values.pop(name, None)
                values[name] = normalize_value(text)
                origin[name] = resolved.origin.get((uname, opt), "")
                notes.append(f"{name} comes from {key} = {raw} (TuneD >= 2.25 writes it through its vm plugin)")
                continue
            not_sysctl[key] = raw
            if unit.conditions:
                not_sysctl[key] += f"  (only where {_when(unit, resolved.variables)})"
        if unit.type == "scheduler" and any(o.startswith(("sched_", "numa_")) for o in unit.options):
            notes.append(f"[{uname}] sched_*/numa_* options: kernel.sched_* sysctls before Linux 5.13, debugfs "
                         "files since; TuneD >= 2.16 writes them wherever the running kernel has them")
    return {"values": values, "modifiers": modifiers, "origin": origin, "conditional": conditional,
            "not_sysctl": not_sysctl, "notes": notes}


def _when(unit: Unit, variables: dict[str, str]) -> str:
    return ", ".join(f"{k}={_expand_soft(v, variables)}" for k, v in unit.conditions.items())


def _expand_soft(value: str, variables: dict[str, str]) -> str:
    """A condition's regex with [variables] expanded, for display only (never applied by tunefleet)."""
    return re.sub(r"(?<!\\)\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), value)
