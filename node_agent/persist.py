"""Persist settings across reboots: a sysctl.d drop-in, written only when the user asks.

The file is the only thing tunefleet ever leaves behind on purpose. It is written atomically,
names where it came from and, in comments, each knob's value before tunefleet (the run's
original), which survive a reboot with the file. Before writing, the host's sysctl configuration
is read the way ``sysctl --system`` orders it (node_agent/sources.py): the reply names every file
the drop-in overrides, and a drop-in that would not win at boot (a later file, /etc/sysctl.conf or
a TuneD profile sets the same knob after it) is refused unless ``force``. ``unpersist`` deletes it
and puts the originals back at once, not only at the next boot: a knob that still holds the
persisted value gets what the remaining configuration sets at boot, or else the recorded
original; one that holds anything else was changed by someone else since and is left alone.
Stdlib only, Python >= 3.7.
"""

import errno
import os
import time

from node_agent import protocol, sources, sysctl
from node_agent.journal import write_file_atomic

DEFAULT_PATH = "/etc/sysctl.d/90-tunefleet.conf"


class BadPath(ValueError):
    pass


def check_path(path):
    """Only ``*.conf`` files directly inside a folder named ``sysctl.d``, by absolute path."""
    path = path or DEFAULT_PATH
    if not isinstance(path, str) or not os.path.isabs(path) or ".." in path.split("/"):
        raise BadPath("persist path must be an absolute path without '..'")
    if not path.endswith(".conf") or os.path.basename(os.path.dirname(path)) != "sysctl.d":
        raise BadPath("persist path must be a .conf file in a sysctl.d folder, got %r" % path[:200])
    # The agent runs as root: a folder reached through a symlink, or one someone else may write
    # to, would let that someone aim this write (or unpersist's delete) at any *.conf file.
    folder = os.path.dirname(path)
    if os.path.realpath(folder) != folder or os.path.islink(path):
        raise BadPath("persist path must not go through a symlink, got %r" % path[:200])
    while folder != "/":
        try:
            st = os.stat(folder)
        except FileNotFoundError:  # made by persist, in a checked parent
            st = None
        if st and (st.st_uid not in (0, os.geteuid()) or (st.st_mode & 0o022 and not st.st_mode & 0o1000)):
            raise BadPath("persist path: %s may be changed by another user than the agent's" % folder)
        folder = os.path.dirname(folder)
    return path


ORIGINAL = "# before tunefleet: "


def standing(path, values):
    """What a drop-in at ``path`` with ``values`` would do at boot: per knob the files it overrides
    (set earlier in sysctl's order) and, when it would not win, what would."""
    scan = sources.scan(sorted(values), extra={"path": path, "values": values})
    overrides, loses_to = {}, {}
    for name, knob in scan["knobs"].items():
        mine = [i for i, f in enumerate(knob["files"]) if f["path"] == path]
        if not mine:  # a file of the same name in an earlier folder hides this path
            hidden = next(f for f in knob["files"] if os.path.basename(f["path"]) == os.path.basename(path)) \
                if any(os.path.basename(f["path"]) == os.path.basename(path) for f in knob["files"]) else None
            loses_to[name] = hidden or {"path": "(a file named %s in an earlier folder)" % os.path.basename(path)}
            continue
        overrides[name] = [{"path": f["path"], "value": f["value"]} for f in knob["files"][:mine[-1]]]
        after = knob["after_tuned"] or knob["boot"]
        if after and after["path"] != path:
            loses_to[name] = {"path": after["path"], "value": after["value"], "by": after.get("by", "file")}
    return {"overrides": overrides, "loses_to": loses_to, "tuned": scan["tuned"]["active"]}


def persist(values, path=None, note="", originals=None, force=False):
    """Write ``name = value`` lines for knobs that exist here; returns what was written, the files
    it overrides and (with ``force``) what it loses to at boot."""
    path = check_path(path)
    if not isinstance(values, dict) or not values:
        raise BadPath("persist needs values: {name: value}")
    lines = ["# written by tunefleet on %s%s" % (time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                                  (": " + " ".join(str(note).split())[:200]) if note else ""),
             "# remove this file (tunefleet restore --unpersist) to return to the values below at the next boot"]
    written = {}
    for name in sorted(values):
        sysctl.check_allowed(name)  # a drop-in would apply a denied knob at every boot
        if not sysctl.exists(name):  # also refuses anything that is not a plain sysctl name
            raise sysctl.Refused(name, protocol.E_VALIDATION, "%s: no such sysctl" % name)
        written[name] = sysctl.normalize(name, values[name])
    where = standing(path, written)
    if where["loses_to"] and not force:
        name, what = sorted(where["loses_to"].items())[0]
        raise sysctl.Refused(name, protocol.E_VALIDATION, "%s would not win at boot: %s sets %s%s after it "
                             "(--force writes it anyway)" % (path, what["path"], name,
                                                             " = " + what["value"] if what.get("value") else ""))
    for name in sorted(written):
        if (originals or {}).get(name) is not None:
            lines.append("%s%s = %s" % (ORIGINAL, name, " ".join(str(originals[name]).split())))
    lines += ["%s = %s" % (name, written[name]) for name in sorted(written)]
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_file_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"), 0o644)
    return dict(where, path=path, values=written)


def read_dropin(path):
    """(values, originals) of a drop-in tunefleet wrote; ({}, {}) when there is none."""
    values: dict = {}
    originals: dict = {}
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError as e:
        if e.errno == errno.ENOENT:
            return values, originals
        raise
    for line in text.splitlines():
        if line.startswith(ORIGINAL) and "=" in line:
            name, value = line[len(ORIGINAL):].split("=", 1)
            originals[name.strip()] = " ".join(value.split())
    for key, value, _ in sources.parse_sysctl_file(path):
        values[key] = value
    return values, originals


def unpersist(path=None, read=None, write=None):
    """Delete the drop-in; with ``read`` and ``write``, also put each knob that still holds the
    persisted value back at once: to what the remaining configuration sets at boot, else to the
    original recorded in the file. Returns {"path", "removed", "restored", "unchanged", "foreign",
    "errors"}."""
    path = check_path(path)
    values, originals = read_dropin(path)
    report = {"path": path, "removed": False, "restored": {}, "unchanged": {}, "foreign": {}, "errors": {}}
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
        return report
    report["removed"] = True
    if read is None or write is None:
        return report
    boot = sources.scan(sorted(values))["knobs"]  # the file is gone: what the next boot would set
    for name, value in sorted(values.items()):
        after = boot[name]["after_tuned"] or boot[name]["boot"]
        target = after["value"] if after and not after["value"].startswith((">", "<")) else originals.get(name)
        current = read(name)
        if target is None or current is None:
            continue
        if current in (target, originals.get(name)):
            report["unchanged"][name] = current
        elif current != value:
            report["foreign"][name] = {"found": current, "ours": value, "original": target}
        else:
            try:
                write(name, target)
                report["restored"][name] = target
            except Exception as e:  # noqa: BLE001 - one knob failing never stops the others
                report["errors"][name] = {"errno": getattr(e, "errno", None), "message": str(e)}
    return report
