"""The winning settings of a run, in the formats configuration management already reads.

    sysctl.d   a drop-in for /etc/sysctl.d/ (read by systemd-sysctl and `sysctl -p FILE`)
    tuned      a TuneD profile directory: tuned.conf with [main] and [sysctl]
    ansible    a playbook of ansible.posix.sysctl tasks
    shell      a POSIX sh script of `sysctl -w` lines
    json       the settings and where they come from, for anything else

Only a verified, significant improvement is exported unless forced: a setting that did not beat
the noise should not travel into a fleet's configuration. Every file names the run, the workload
and the verified change it comes from, so whoever finds it later can trace it back.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
from pathlib import Path

import yaml

from controller.errors import UserError
from controller.history import RunRecord

FORMATS = ("sysctl.d", "tuned", "ansible", "shell", "json")
DROP_IN = "/etc/sysctl.d/90-tunefleet.conf"
_NAME = re.compile(r"^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$")


def settings(run: RunRecord, force: bool = False) -> dict[str, str]:
    """The best configuration as sysctl text, checked to be worth exporting and safe to write."""
    r = run.result
    if r is None or r.cancelled:
        raise UserError(f"{run.path}: the run has no result (interrupted, cancelled or failed); nothing to export")
    if not run.verified and not force:
        raise UserError(f"{run.path}: not a verified improvement ({r.verdict or 'no verdict'}); "
                        "pass --force to export it anyway")
    values = {str(k): " ".join(str(v).split()) for k, v in r.best_config.items()}
    if not values:
        raise UserError(f"{run.path}: the result has no best configuration")
    for k, v in values.items():
        if not _NAME.match(k) or not v or any(c in v for c in "\n=#;"):
            raise UserError(f"{run.path}: refusing to export {k!r} = {v!r}: not a sysctl setting")
    return values


def provenance(run: RunRecord) -> list[str]:
    """Where these settings come from, one line each (written as comments)."""
    r = run.as_dict()
    v = r.get("verification") or {}
    change = (f"{'verified' if run.verified else 'measured'} change {v['change_pct']:+.1f}% in "
              f"{r.get('reward_metric')} "
              f"(95% CI {v['ci_low_pct']:+.1f}% to {v['ci_high_pct']:+.1f}%, p={v['p_value']:.3g})"
              if v.get("change_pct") is not None else "not verified")
    lines = [f"tunefleet run {run.path.resolve()}",
             f"workload: {run.spec.get('workload_name', '?')}",
             f"{change}{'' if run.verified else ' -- NOT a verified improvement, exported with --force'}",
             f"hosts: {', '.join(sorted(run.hosts) or sorted(r.get('hosts') or {}))}"]
    return [re.sub(r"[\r\n]+", " ", line) for line in lines]


def _comments(run: RunRecord) -> str:
    return "".join(f"# {line}\n" for line in provenance(run))


def sysctl_d(run: RunRecord, values: dict[str, str]) -> str:
    return _comments(run) + "".join(f"{k} = {v}\n" for k, v in values.items())


def current_profile(run: RunRecord) -> str | None:
    """The TuneD profile every host reported running (facts `tuned_profile`), when they agree."""
    seen = {((h or {}).get("facts") or {}).get("tuned_profile") for h in run.hosts.values()}
    return seen.pop() if len(seen) == 1 else None


def tuned_conf(run: RunRecord, values: dict[str, str], include: str | None = None) -> str:
    """A TuneD profile; `include` is the profile the hosts run today, so the export only adds to it."""
    if include is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", include):
        raise UserError(f"--include {include!r}: not a TuneD profile name")
    summary = f"tunefleet: {run.spec.get('workload_name', 'tuned settings')}"
    main = [f"summary={summary}"] + ([f"include={include}"] if include else [])
    text = (_comments(run) + "\n[main]\n" + "\n".join(main) + "\n\n[sysctl]\n"
            + "".join(f"{k}={v}\n" for k, v in values.items()))
    _check_ini(text, values)
    return text


def _check_ini(text: str, values: dict[str, str]) -> None:
    """Read it back the way TuneD does (configparser, case kept, no interpolation)."""
    parser = configparser.ConfigParser(delimiters=("=",), inline_comment_prefixes=("#",), interpolation=None,
                                       strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # configparser's way to keep names' case
    parser.read_string(text)
    if dict(parser["sysctl"]) != values:
        raise UserError("the TuneD profile does not read back as written")


def ansible_playbook(run: RunRecord, values: dict[str, str], sysctl_file: str = DROP_IN) -> str:
    play = [{
        "name": f"Kernel settings from tunefleet ({run.spec.get('workload_name', 'tuning run')})",
        "hosts": "all",
        "become": True,
        "gather_facts": False,
        "tasks": [{
            "name": "Set the verified sysctl values and keep them across reboots",
            "ansible.posix.sysctl": {"name": "{{ item.key }}", "value": "{{ item.value }}",
                                     "sysctl_file": "{{ tunefleet_sysctl_file }}", "state": "present",
                                     "reload": True},
            "loop": "{{ tunefleet_sysctl | dict2items }}",
        }],
        "vars": {"tunefleet_sysctl": values, "tunefleet_sysctl_file": sysctl_file},
    }]
    return "---\n" + _comments(run) + yaml.safe_dump(play, sort_keys=False, default_flow_style=False, width=1000)


def shell_script(run: RunRecord, values: dict[str, str]) -> str:
    lines = ["#!/bin/sh", *(f"# {line}" for line in provenance(run)),
             "# Applies until reboot; the sysctl.d export keeps them.", "set -e"]
    lines += [f"sysctl -w {shlex.quote(f'{k}={v}')}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def as_json(run: RunRecord, values: dict[str, str]) -> str:
    r = run.as_dict()
    return json.dumps({"run": str(run.path.resolve()), "workload": run.spec.get("workload_name"),
                       "reward_metric": r.get("reward_metric"), "verified": run.verified,
                       "verification": r.get("verification"), "settings": values}, indent=2) + "\n"


def render(run: RunRecord, fmt: str, *, force: bool = False, include: str | None = None) -> str:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    values = settings(run, force)
    if fmt == "sysctl.d":
        return sysctl_d(run, values)
    if fmt == "tuned":
        return tuned_conf(run, values, include)
    if fmt == "ansible":
        return ansible_playbook(run, values)
    if fmt == "shell":
        return shell_script(run, values)
    return as_json(run, values)


def write(text: str, fmt: str, output: Path, overwrite: bool = False) -> Path:
    """Write the export; a TuneD profile is a directory holding tuned.conf. Never half a file."""
    target = output / "tuned.conf" if fmt == "tuned" else output
    if target.exists() and not overwrite:
        raise UserError(f"{target} exists; pass --force to replace it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        if fmt == "shell":
            os.chmod(tmp, 0o755)
        tmp.replace(target)
    except OSError as e:
        raise UserError(f"cannot write {target}: {e.strerror or e}") from None
    return target
