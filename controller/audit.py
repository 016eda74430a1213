"""`tunefleet audit`: an advice mode that reads every host and changes nothing.

Per host and knob: the current value, the value to compare it with (a past run's verified
winner, or a TuneD profile's value), who else manages the knob (the scan of
node_agent/sources.py: sysctl files in sysctl's order, the active TuneD profile, tuning
daemons) and, for a run that persisted its winner, whether the host drifted from it since
(the value, the drop-in still there and still winning at boot).

Nothing is written anywhere: no agent is started (it would take its state folder's lock and
replay a stale journal), nothing is uploaded, and sudo is not used. The scanner's own source
goes to each host over SSH on stdin of ``python3 -I -`` as the inventory's user, reads /proc/sys,
/etc/sysctl.d, /etc/tuned and /proc, and prints one JSON document.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.catalog import Catalog
from controller.conflicts import knob_lines
from controller.errors import TunefleetError, UserError

if TYPE_CHECKING:
    from controller.fleet.inventory import HostSpec

SOURCE = Path(__file__).resolve().parent.parent / "node_agent" / "sources.py"


def profile_values(name: str, scan: dict) -> dict[str, str]:
    """A profile's sysctl values on one host. ``tuned:NAME`` or ``NAME`` is the TuneD profile as
    the host has it (its /etc/tuned or /usr/lib/tuned, includes resolved); ``active`` the one
    TuneD runs there. The one place to point at a catalog of shipped profiles later."""
    settings = (scan.get("profile") or {}).get("settings") or {}
    return {k: v["value"] for k, v in settings.items()}


def _tuned_name(profile: str) -> str:
    return profile.split(":", 1)[1] if profile.startswith("tuned:") else profile


def read_host(spec: HostSpec, names: list[str], profile: str | None, options) -> dict:
    """The scanner's JSON from one host (as the SSH user, no agent, no sudo, nothing written)."""
    from controller.fleet.transport import SSHTransport  # here: the SSH stack, once a host is read

    args = " ".join(shlex.quote(n) for n in names)
    if profile:
        args += " --profile " + shlex.quote(_tuned_name(profile))
    python = shlex.quote(spec.python or "/usr/bin/python3")
    command = f"P={python}; [ -x \"$P\" ] || P=python3; exec \"$P\" -I - {args}"
    transport = SSHTransport(spec, connect_timeout=options.connect_timeout,
                             accept_new_host_keys=options.accept_new_host_keys, ssh_config=options.ssh_config)
    try:
        rc, out, err = transport.run(command, stdin=SOURCE.read_bytes(), timeout=60.0)
    finally:
        transport.close()
    if rc != 0:
        last = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
        raise TunefleetError(f"cannot read the host: {last}", spec.name)
    return json.loads(out)


def reference(run, host: str) -> tuple[dict[str, str], dict]:
    """A past run's verified winner for `host` ({} when the run verified no improvement), and what
    it persisted there ({"path", "values"} or {})."""
    result = run.as_dict()
    if not result.get("success"):
        return {}, {}
    values = {k: " ".join(str(v).split()) for k, v in (result.get("best_config") or {}).items()}
    path = (result.get("persisted") or {}).get(host)
    persisted = {"path": path, "values": values} if path and not str(path).startswith("error") else {}
    return values, persisted


def knob_report(knob: str, scan: dict, ref: dict[str, str], ref_from: str, persisted: dict) -> dict:
    """One knob on one host: current, reference, managers, drift since a persisted run."""
    current = (scan.get("values") or {}).get(knob)
    k = (scan.get("knobs") or {}).get(knob) or {}
    entry = {"current": current, "reference": ref.get(knob), "reference_from": ref_from if knob in ref else None,
             "matches": None if knob not in ref else _same(current, ref[knob]),
             "managed": knob_lines(knob, scan), "files": k.get("files") or [], "boot": k.get("boot"),
             "tuned": k.get("tuned"), "daemons": k.get("daemons") or [], "drift": None}
    if persisted and knob in persisted["values"]:
        entry["drift"] = _drift(knob, current, persisted, k)
    return entry


def _same(current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if wanted[:1] in "<>":  # TuneD's "at least" / "at most"
        try:
            a, b = int(current.split()[0]), int(wanted[1:].split()[0])
        except ValueError:
            return False
        return a >= b if wanted[0] == ">" else a <= b
    return current == " ".join(wanted.split())


def _drift(knob: str, current: str | None, persisted: dict, k: dict) -> str | None:
    """Why the host no longer holds what the run persisted (None when it does)."""
    want, path = persisted["values"][knob], persisted["path"]
    mine = [f for f in k.get("files") or [] if f["path"] == path]
    if not mine:
        return f"{path} no longer sets it (removed or edited)"
    if mine[-1]["value"] != want:
        return f"{path} now sets {mine[-1]['value']}, the run persisted {want}"
    after = k.get("after_tuned") or k.get("boot")
    if after and after["path"] != path:
        return f"{after['path']} sets {after['value']} after {path}: the persisted value no longer wins at boot"
    if current != want:
        return f"now {current}, the run persisted {want}: changed since (by hand, or by a tool)"
    return None


def audit(specs, names: list[str], options, run=None, profile: str | None = None) -> dict:
    """Read every host at once; results as data (a host that cannot be read gets its error)."""
    started = time.monotonic()
    with cf.ThreadPoolExecutor(max_workers=min(32, max(1, len(specs)))) as pool:
        futures = {s.name: pool.submit(read_host, s, names, profile, options) for s in specs}
    hosts: dict[str, dict[str, Any]] = {}
    for name, fut in futures.items():
        try:
            scan = fut.result()
        except (TunefleetError, OSError, ValueError) as e:
            hosts[name] = {"error": str(getattr(e, "message", e))}
            continue
        if run is not None:
            ref, persisted = reference(run, name)
            ref_from = f"run {run.path.name} (verified winner)"
        elif profile:
            ref, persisted = profile_values(profile, scan), {}
            ref_from = f"profile {profile}"
        else:
            ref, persisted, ref_from = {}, {}, ""
        knobs = sorted(set(names) | set(ref)) if names else sorted(ref)
        hosts[name] = {"hostname": scan.get("hostname"), "boot_id": scan.get("boot_id"),
                       "tuned": {"active": scan["tuned"]["active"]}, "daemons": scan.get("daemons") or {},
                       "persisted": persisted or None,
                       "knobs": {k: knob_report(k, scan, ref, ref_from, persisted) for k in knobs}}
    return {"hosts": hosts, "elapsed_s": round(time.monotonic() - started, 3), "writes": 0}


def knob_names(spec_file: Path | None, run, profile: str | None) -> list[str]:
    """The knobs to audit: the spec's, the run's, the catalog's (a profile adds its own per host)."""
    if spec_file is not None:
        from controller.spec import TuningSpec  # here: pydantic and numpy, for --spec only

        return TuningSpec.load(spec_file).knob_names
    if run is not None:
        return sorted({p["param"] for p in run.spec.get("action_space") or []}
                      | set(run.as_dict().get("best_config") or {}))
    if profile:
        return []
    return Catalog.default().names()


def check_choice(spec_file, run_name, profile) -> None:
    if sum(x is not None for x in (spec_file, run_name, profile)) > 1:
        raise UserError("audit compares with one thing: give --spec, --profile or a RUN, not several")


def print_audit(console, report: dict) -> None:
    from rich.markup import escape

    for host, h in report["hosts"].items():
        if h.get("error"):
            console.print(f"[red]{host}[/]: {escape(h['error'])}")
            continue
        console.print(f"[bold]{host}[/] ({h.get('hostname')})" + (f", TuneD profile {', '.join(h['tuned']['active'])}"
                                                                   if h["tuned"]["active"] else ""))
        for knob, k in h["knobs"].items():
            ref = "" if k["reference"] is None else (
                f"  {'=' if k['matches'] else '≠'} {k['reference']} ({k['reference_from']})")
            console.print(f"  {knob} = {k['current']}{escape(ref)}", soft_wrap=True)
            for line in k["managed"]:
                console.print(f"    {escape(line.split(': ', 1)[1])}", soft_wrap=True)
            if k["drift"]:
                console.print(f"    [yellow]drift since the persisted run:[/] {escape(k['drift'])}", soft_wrap=True)
    console.print(f"read {len(report['hosts'])} host(s) in {report['elapsed_s']:.2f} s; nothing was written")
