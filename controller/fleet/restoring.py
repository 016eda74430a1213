"""What `tunefleet restore` put back, per host and knob: restored, already original, or failed.

An agent restores a stale journal as soon as it starts (reported in ``hello``) and then whatever
is still journaled, kept originals included, on ``restore {"kept": true}``. The two reports are
merged here into one truth per knob. A knob that failed stays journaled on the host (the agent
tries again at its next start and on the next restore), and is listed in ``left``: a host with
anything left is not back to its originals, and the command exits non-zero. A journal written
during an earlier boot was discarded by the agent at start (hello's ``discarded``): the reboot
reset those knobs, and they are named as such, not as restored: a value kept with --keep-best is
reported as gone (or as back, when a persisted drop-in set it again at boot).

A knob that holds neither its original nor what tunefleet wrote was changed by someone else
since: the agent leaves it as they set it and it is reported as ``foreign``, never overwritten.
``--unpersist`` deletes the drop-in and puts the originals back at once (the agent's
``unpersist``), with the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HostRestore:
    restored: dict[str, str] = field(default_factory=dict)
    unchanged: dict[str, str] = field(default_factory=dict)  # already at the original: not written
    failed: dict[str, dict] = field(default_factory=dict)     # name -> {"errno", "message"}
    left: list[str] = field(default_factory=list)             # still journaled: left changed
    removed: str | None = None                                # the sysctl.d drop-in deleted
    # name -> {"original", "boot_id", "written", "kept", "now"}
    discarded: dict[str, dict] = field(default_factory=dict)
    foreign: dict[str, dict] = field(default_factory=dict)    # name -> {"found", "ours", "original"}: someone else's

    @property
    def clean(self) -> bool:
        return not self.left

    def to_dict(self) -> dict:
        return {"restored": self.restored, "unchanged": self.unchanged, "failed": self.failed,
                "left": self.left, "removed": self.removed, "discarded": self.discarded, "foreign": self.foreign}

    def lines(self, host: str) -> list[str]:
        out = [f"{host}: {n} restored ({v})" for n, v in self.restored.items()]
        out += [f"{host}: {n} already original ({v})" for n, v in self.unchanged.items()]
        for name, err in self.failed.items():
            code = err.get("errno")
            label = f" [errno {code}]" if code else ""
            where = "still journaled on the host" if name in self.left else "no longer journaled"
            out.append(f"{host}: {name} FAILED: {err.get('message')}{label}; {where}")
        for name, d in self.foreign.items():
            out.append(f"{host}: {name} left at {d.get('found')} as someone else set it (tunefleet had "
                       f"{d.get('ours') or d.get('original')}, original {d.get('original')}); not written back")
        for name, d in self.discarded.items():
            boot = f"{d['boot_id'][:8]}…"
            if d.get("kept") and d.get("written") is not None:
                back = d.get("now") == d["written"]
                out.append(f"{host}: {name}: the kept value {d['written']} "
                           + (f"is back: set again at boot (a persisted drop-in), after the reboot since {boot}"
                              if back else f"is gone: the host rebooted since {boot} and it is now {d.get('now')} "
                                           f"(original {d['original']}); nothing written"))
            else:
                out.append(f"{host}: {name} not written back: journaled during an earlier boot "
                           f"({boot}, original {d['original']}), which the reboot reset")
        if self.removed:
            out.append(f"{host}: removed {self.removed}")
        if not out:
            out.append(f"{host}: nothing to restore")
        return out


def restore_host(host, unpersist_path: str | None = None) -> HostRestore:
    """Restore one connected host (``Host``) and merge its start-up recovery into the report."""
    facts = host.facts
    reply = host.request("restore", {"kept": True})
    report = HostRestore(dict(facts.get("recovered") or {}), dict(facts.get("recover_unchanged") or {}))
    retried = set(reply["restored"]) | set(reply["unchanged"]) | set(reply["errors"])
    # a knob that failed at start and was put back by the restore request is no failure
    report.failed = {n: e for n, e in (facts.get("recover_errors") or {}).items() if n not in retried}
    report.restored.update(reply["restored"])
    report.unchanged.update(reply["unchanged"])
    report.failed.update(reply["errors"])
    report.foreign = {**(facts.get("recover_foreign") or {}), **(reply.get("foreign") or {})}
    report.left = list(reply.get("left", []))
    earlier = reply.get("earlier") or facts.get("discarded") or {}
    for file, journal in earlier.items():
        for name, original in journal["originals"].items():
            report.discarded[name] = {"original": original, "boot_id": journal["boot_id"],
                                      "written": (journal.get("written") or {}).get(name), "kept": "kept" in file}
    if report.discarded:  # say what each knob is now: a kept value may be gone, or back from a drop-in
        now = host.request("read", {"names": sorted(report.discarded)})["values"]
        for name, d in report.discarded.items():
            d["now"] = now.get(name)
    if unpersist_path:
        dropped = host.request("unpersist", {"path": unpersist_path})
        if dropped["removed"]:
            report.removed = unpersist_path
        for name, value in (dropped.get("restored") or {}).items():
            report.restored[name] = value
            report.discarded.pop(name, None)
        for name, value in (dropped.get("unchanged") or {}).items():
            report.unchanged.setdefault(name, value)
        report.foreign.update(dropped.get("foreign") or {})
        report.failed.update(dropped.get("errors") or {})
    return report
