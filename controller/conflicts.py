"""What else manages the knobs a spec tunes, per host, before anything is changed.

Each agent reads its host's sysctl configuration the way `sysctl --system` orders it, the active
TuneD profile and the running tuning daemons (node_agent/sources.py, the ``scan`` op). This module
turns those scans into what `check`, `plan` and `run` say and refuse:

- per knob, every file that sets it and the one that wins at boot; a TuneD profile that sets it
  (and whether the sysctl files win over it, TuneD's ``reapply_sysctl``);
- a running daemon that retunes a knob the run would tune (tuned with a profile that sets it,
  bpftune for the knobs its tuners own): refused, with one line saying how to proceed, since its
  writes would be measured as tunefleet's and drift detection would stop every host;
- for ``--persist``: the file it writes, each file it overrides, and a refusal when the drop-in
  would not win at boot (a later file, /etc/sysctl.conf or a TuneD profile sets the knob after it)
  unless ``--force``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.errors import TunefleetError, UserError

if TYPE_CHECKING:
    from controller.spec import TuningSpec


def scan_fleet(fleet, names: list[str], persist_path: str | None = None, persist_values: dict | None = None) -> dict:
    """{host: scan} for the connected hosts (a host that cannot scan gets {"error": ...})."""
    args: dict = {"names": list(names)}
    if persist_path:
        values = persist_values or {}
        args["extra"] = {"path": persist_path, "values": {n: values.get(n, "?") for n in names}}
    out = {}
    for name, outcome in fleet.map(lambda h: h.request("scan", args)).items():
        out[name] = outcome.value if outcome.ok else {"error": str(outcome.error.message)}
    return out


def _where(entry: dict) -> str:
    return f"{entry['path']}" + (f":{entry['line']}" if entry.get("line") else "")


def knob_lines(knob: str, scan: dict, persist_path: str | None = None) -> list[str]:
    """What manages one knob on one host, in words (empty when nothing does)."""
    k = (scan.get("knobs") or {}).get(knob)
    if not k:
        return []
    out = []
    files = [f for f in k["files"] if f["path"] != persist_path]
    if files:
        winner = k["boot"]
        listed = ", ".join(f"{_where(f)} ({f['value']})" for f in files)
        won = "" if winner is None else (f"; at boot {winner['path']} wins ({winner['value']})"
                                         if len(k["files"]) > 1 or winner["path"] != persist_path else "")
        out.append(f"{knob}: set by {listed}{won}")
    if k.get("tuned"):
        t, after = k["tuned"], k.get("after_tuned") or {}
        beaten = after.get("by") == "file"
        out.append(f"{knob}: TuneD profile '{t['profile']}' sets {t['value']} ({t['path']})"
                   + (f"; {after['path']} wins over it (TuneD applies the sysctl files again)" if beaten
                      else "; it wins over the sysctl files"))
    for daemon in k.get("daemons") or []:
        out.append(f"{knob}: retuned at any time by the running {daemon} daemon "
                   f"(pid {', '.join(str(p) for p in scan['daemons'].get(daemon, []))})")
    return out


def host_lines(scan: dict, names: list[str], persist_path: str | None = None) -> list[str]:
    if scan.get("error"):
        return [f"cannot read what else manages the knobs: {scan['error']}"]
    return [line for knob in names for line in knob_lines(knob, scan, persist_path)]


def daemon_refusals(scans: dict, names: list[str]) -> list[str]:
    """One line per host and daemon that would retune a knob of the run."""
    out = []
    for host, scan in scans.items():
        by: dict[str, list[str]] = {}
        for knob in names:
            for daemon in ((scan.get("knobs") or {}).get(knob) or {}).get("daemons") or []:
                by.setdefault(daemon, []).append(knob)
        for daemon, knobs in by.items():
            pids = ", ".join(str(p) for p in (scan.get("daemons") or {}).get(daemon, []))
            stop = "systemctl stop tuned (or tuned-adm off)" if daemon == "tuned" else f"systemctl stop {daemon}"
            out.append(f"{host}: {daemon} (pid {pids}) retunes {', '.join(knobs)}: stop it for the run ({stop}) "
                       f"or leave {'that knob' if len(knobs) == 1 else 'those knobs'} out of the spec")
    return out


def persist_lines(scans: dict, names: list[str], path: str) -> tuple[list[str], list[str]]:
    """(what --persist will do per host, why it would not win at boot) for a drop-in at `path`."""
    says, loses = [], []
    for host, scan in scans.items():
        if scan.get("error"):
            loses.append(f"{host}: cannot tell whether {path} would win at boot: {scan['error']}")
            continue
        overridden = sorted({f["path"] for k in names for f in (scan["knobs"].get(k) or {}).get("files", [])
                             if f["path"] != path and _before(scan, f["path"], path)})
        overriding = f", overriding {', '.join(overridden)}" if overridden else ""
        says.append(f"{host}: --persist writes {path}{overriding}")
        for knob in names:
            k = scan["knobs"].get(knob) or {}
            win = k.get("after_tuned") or k.get("boot")
            if win and win["path"] != path:
                what = f"TuneD profile '{win['profile']}'" if win.get("by") == "tuned" else win["path"]
                loses.append(f"{host}: {path} would not win at boot: {what} sets {knob} = {win['value']} after it")
    return says, loses


def _before(scan: dict, other: str, path: str) -> bool:
    files = scan.get("files") or []
    return other in files and path in files and files.index(other) < files.index(path)


def preflight(fleet, spec: TuningSpec, persist_path: str | None, force: bool, say) -> dict:
    """Scan every host for the spec's knobs, say what manages them, and refuse what must not run:
    a daemon that retunes a knob of the run, a --persist drop-in that would lose at boot (unless
    --force). Returns the scans (recorded with the run)."""
    names = spec.knob_names
    try:
        scans = scan_fleet(fleet, names, persist_path)
    except TunefleetError as e:
        raise UserError(f"cannot read what else manages the knobs: {e}") from None
    for host, scan in scans.items():
        for line in host_lines(scan, names, persist_path):
            say(f"{host}: {line}")
    refused = daemon_refusals(scans, names)
    if refused:
        raise UserError(refused[0] + (f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""))
    if persist_path:
        says, loses = persist_lines(scans, names, persist_path)
        for line in says:
            say(line)
        if loses and not force:
            raise UserError(loses[0] + "; --force persists anyway")
        for line in loses:
            say(f"{line} (--force)")
    return scans
