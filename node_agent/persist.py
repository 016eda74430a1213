"""Persist settings across reboots: a sysctl.d drop-in, written only when the user asks.

The file is the only thing tunefleet ever leaves behind on purpose. It is written atomically,
names where it came from, and is removed by ``unpersist`` (or by hand) to return to the
distribution's defaults at the next boot. Stdlib only, Python >= 3.7.
"""

import errno
import os
import time

from node_agent import protocol, sysctl
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


def persist(values, path=None, note=""):
    """Write ``name = value`` lines for knobs that exist here; returns what was written."""
    path = check_path(path)
    if not isinstance(values, dict) or not values:
        raise BadPath("persist needs values: {name: value}")
    lines = ["# written by tunefleet on %s%s" % (time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                                  (": " + " ".join(str(note).split())[:200]) if note else ""),
             "# remove this file to return to the defaults at the next boot"]
    written = {}
    for name in sorted(values):
        sysctl.check_allowed(name)  # a drop-in would apply a denied knob at every boot
        if not sysctl.exists(name):  # also refuses anything that is not a plain sysctl name
            raise sysctl.Refused(name, protocol.E_VALIDATION, "%s: no such sysctl" % name)
        written[name] = sysctl.normalize(name, values[name])
        lines.append("%s = %s" % (name, written[name]))
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_file_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"), 0o644)
    return {"path": path, "values": written}


def unpersist(path=None):
    path = check_path(path)
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
        return {"path": path, "removed": False}
    return {"path": path, "removed": True}
