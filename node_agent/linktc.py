"""How the link's frames are steered on the host, and how that is taken away again (idempotent).

A tc ``clsact`` qdisc on the device toward the peer (added only where there is none) carries an
egress ``u32`` filter, ``ip dst PEER/32``, whose ``mirred`` action redirects the frames into the
forwarder's TAP device (node_agent/link.py, node_agent/linkfwd.py). Everything here runs ``ip``
and ``tc`` from iproute2, without a shell. Stdlib only, Python >= 3.7.
"""

import errno
import json
import logging
import os
import subprocess
import time

from node_agent import facts

log = logging.getLogger("tunefleet.agent")


def tool(name, *argv):
    """Run ip or tc; its stdout, or OSError with its first error line."""
    path = facts.find_program(name)
    if path is None:
        raise OSError(errno.ENOENT, "%s not found: the link emulator needs iproute2's %s" % (name, name))
    p = subprocess.run([path] + list(argv), capture_output=True, timeout=10)
    if p.returncode != 0:
        message = (p.stderr.decode("utf-8", "replace").strip().splitlines() or ["exit %d" % p.returncode])[0]
        raise OSError(errno.EIO, "%s %s: %s" % (name, " ".join(argv), message))
    return p.stdout.decode("utf-8", "replace")


def quiettool(name, *argv):
    """Like _tool, for probes: None instead of an error (the device or qdisc is not there)."""
    try:
        return tool(name, *argv)
    except OSError:
        return None


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def quiet(step, *args):
    """A best-effort step (a kernel without IPv6 has no such file): failures are logged only."""
    try:
        step(*args)
    except OSError as e:
        log.info("%s", e)


def has_clsact(device):
    return "qdisc clsact" in (quiettool("tc", "qdisc", "show", "dev", device) or "")


def remove_filter(entry):
    """Take the redirecting filter off; True when it was there."""
    device, pref = entry["device"], str(entry["pref"])
    if not (quiettool("tc", "filter", "show", "dev", device, "egress", "pref", pref) or "").strip():
        return False
    tool("tc", "filter", "del", "dev", device, "egress", "pref", pref)
    return True


def remove_qdisc(entry):
    """Remove the clsact qdisc if the link added it and no filter of anyone else is on it."""
    device = entry["device"]
    if not entry.get("qdisc_added") or not has_clsact(device):
        return False
    for direction in ("ingress", "egress"):
        if (quiettool("tc", "filter", "show", "dev", device, direction) or "").strip():
            log.info("leaving the clsact qdisc on %s: it holds other filters now", device)
            return False
    tool("tc", "qdisc", "del", "dev", device, "clsact")
    return True


def remove_device(entry, wait=1.0):
    """Delete the TAP device if it is still there. It goes away by itself when the forwarder's
    file closes, a moment after the process is gone: wait that moment before deleting it."""
    path = "/sys/class/net/%s/tun_flags" % entry["tap"]
    deadline = time.monotonic() + wait
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    if not os.path.exists(path):
        return False
    try:
        tool("ip", "link", "del", "dev", entry["tap"])
    except OSError:
        if os.path.exists(path):
            raise
    return True


def orphaned(path):
    """The forwarder's last act when the agent died: traffic to the peer must flow again."""
    try:
        with open(path) as f:
            entry = json.load(f)
        if entry.get("filter"):
            remove_filter(entry)
        remove_qdisc(entry)
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.error("could not take the link's filter down: %s", e)
