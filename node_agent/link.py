"""A one-way emulated link (delay, rate, loss, queue limit) for what this host sends to one peer.

The kernels the fleet runs on may have no netem, so the link is made in user space, at the same
place netem would sit: the egress of the device that leads to the peer.

    frames to the peer ─ DEV egress: clsact, u32 `ip dst PEER/32`, mirred redirect ─> TAP
    TAP ─ forwarder (linkfwd.py: loss, limit, rate, delay) ─ AF_PACKET, qdisc bypass ─> DEV

Nothing is routed differently: traffic back from the peer, to any other address and on loopback
never meets the filter, and rp_filter (strict on RHEL and openEuler) sees the routes it always
saw. (Policy routing into a TUN device, the obvious design, breaks there: rp_filter's reverse
lookup for the peer's replies matches the same rule and points at the TUN device, and with
rp_filter=1 every reply is dropped.)

The tc and ip steps are in node_agent/linktc.py. Every change (the forwarder and its TAP
device, the clsact qdisc when there was none, the filter) is journaled in ``link.json`` in the
state folder (write + fsync) before it is made, so ``down()`` and ``cleanup_stale()`` at the
agent's next start remove exactly what was added, also after a SIGKILL. The forwarder dies
with the agent and then takes the filter down itself. Stdlib only, Python >= 3.7.
"""

import errno
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import zlib

from node_agent import facts, journal, linktc

JOURNAL = "link.json"
FORMAT = 1
TAP_QUEUE = 10000     # frames the TAP device holds while the forwarder is busy (its txqueuelen)
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
LIMITS = {"delay_ms": (0.0, 10000.0), "rate_mbit": (0.001, 10000.0), "loss_pct": (0.0, 100.0)}
DEFAULTS = {"loss_pct": 0.0, "limit": 1000, "seed": 0}
FULL_FRAME = 1514  # bytes of a full-size Ethernet frame, as the link counts them

log = logging.getLogger("tunefleet.agent")


class BadArgs(ValueError):
    """link_up arguments the agent cannot accept."""


def parse_settings(args):
    """Validated {peer, delay_ms, rate_mbit, loss_pct, limit, seed} from link_up's args."""
    unknown = sorted(set(args) - set(LIMITS) - set(DEFAULTS) - {"peer"})
    if unknown:
        raise BadArgs("unknown link_up argument(s): %s" % ", ".join(unknown))
    for key in ("peer", "delay_ms", "rate_mbit"):
        if key not in args:
            raise BadArgs("link_up needs %s" % key)
    settings = dict(DEFAULTS)
    settings.update(args)
    for key, (low, high) in LIMITS.items():
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise BadArgs("%s must be a number from %g to %g, got %r" % (key, low, high, value))
        settings[key] = float(value)
    for key, low, high in (("limit", 1, 1000000), ("seed", 0, 2 ** 63 - 1)):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BadArgs("%s must be an integer from %d to %d, got %r" % (key, low, high, value))
    if not isinstance(settings["peer"], str):
        raise BadArgs("peer must be an IPv4 address as a string")
    return settings


def egress_device(peer):
    """The device this host sends ``peer``'s packets out of; refuses what is not another host."""
    try:
        address = ipaddress.IPv4Address(peer)
    except ValueError:
        raise BadArgs("peer must be an IPv4 address, got %r" % peer[:80]) from None
    if (address.is_loopback or address.is_multicast or address.is_unspecified
            or address.is_reserved or address == ipaddress.IPv4Address("255.255.255.255")):
        raise BadArgs("peer %s is not the address of another host" % peer)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((peer, 0))
    except OSError:
        pass  # EADDRNOTAVAIL: not ours, as it should be
    else:
        raise BadArgs("peer %s is this host's own address" % peer)
    finally:
        probe.close()
    try:
        words = linktc.tool("ip", "-4", "-o", "route", "get", peer).split()
    except OSError as e:
        raise BadArgs("no route to peer %s: %s" % (peer, e.strerror)) from None
    if not words or words[0] in ("local", "broadcast", "multicast", "unreachable", "prohibit", "blackhole"):
        raise BadArgs("peer %s is not the address of another host (route: %s)" % (peer, " ".join(words)))
    device = words[words.index("dev") + 1] if "dev" in words else None
    if device in (None, "lo"):
        raise BadArgs("peer %s is not reached through a network device (route: %s)" % (peer, " ".join(words)))
    return device


def _start_time(pid):
    """A live process's start time in clock ticks since boot (tells a reused pid apart); None
    when there is no such process or it is a zombie (dead, its files closed)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if len(fields) < 20 or fields[0] in ("Z", "X") else fields[19]


def _kill_stale(entry):
    """SIGKILL a forwarder left by an agent that died; only the very process that was journaled."""
    pid = entry.get("pid")
    if not pid or entry.get("boot_id") != journal.read_boot_id():
        return None  # a pid of another boot names some other process now
    if _start_time(pid) != entry.get("pid_start"):
        return None
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return None
    deadline = time.monotonic() + 5.0
    while _start_time(pid) == entry.get("pid_start") and time.monotonic() < deadline:
        time.sleep(0.01)  # not our child: it is reaped by init, we can only watch it go
    return pid


class Link:
    """The one link an agent may have up, its forwarder process, and its journal."""

    def __init__(self, state_dir, boot_id):
        self.state_dir, self.boot_id = state_dir, boot_id
        self.path = os.path.join(state_dir, JOURNAL)
        name = zlib.crc32(os.path.abspath(state_dir).encode("utf-8"))
        self.tap = "tfl%08x" % name             # per state folder: two agents never share one
        self.pref = 20000 + name % 10000        # the filter's priority on the egress device
        self.entry = None                       # the journal entry of the link that is up
        self.proc = None

    def _save(self):
        data = json.dumps(self.entry, indent=1, sort_keys=True).encode("utf-8")
        journal.write_file_atomic(self.path, data, 0o600)

    def _load(self):
        try:
            with open(self.path) as f:
                entry = json.load(f)
            entry["device"], entry["tap"], entry["pref"]  # a KeyError unless it is a journal we can act on
            return entry
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        except (ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable %s: %s", self.path, e)
            return None

    def describe(self):
        """What is up. ``in_flight_frames``: full-size frames the link holds at its rate during
        its delay; a ``limit`` below it caps the throughput under the rate (netem's too)."""
        e = self.entry
        assert e is not None  # described while a link is up
        s = e["settings"]
        described = dict((k, e[k]) for k in ("peer", "device", "tap", "pref", "qdisc_added", "pid", "settings"))
        described["in_flight_frames"] = int(s["rate_mbit"] * 1e6 * s["delay_ms"] / 1000.0 / 8 / FULL_FRAME)
        return described

    def up(self, args):
        """Bring the link up; returns what was set up. Refuses a second link."""
        if self.entry is not None:
            raise BadArgs("a link to %s is up already: link_down first" % self.entry["peer"])
        settings = parse_settings(args)
        device = egress_device(settings["peer"])
        if self._load() is not None:  # left by a failed cleanup: try once more
            self.cleanup_stale()
        for tool in ("ip", "tc"):
            if facts.find_program(tool) is None:
                raise OSError(errno.ENOENT, "%s not found: the link emulator needs iproute2's" % tool)
        self.entry = {"format": FORMAT, "boot_id": self.boot_id, "peer": settings["peer"],
                      "device": device, "tap": self.tap, "pref": self.pref, "settings": settings,
                      "qdisc_added": False, "filter": False, "pid": None, "pid_start": None}
        self._save()
        try:
            self._start_forwarder(settings, device)
            with open("/sys/class/net/%s/mtu" % device) as f:
                mtu = f.read().strip()
            linktc.quiet(linktc.write, "/proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.tap, "1")  # no IPv6
            linktc.tool("ip", "link", "set", "dev", self.tap, "mtu", mtu, "txqueuelen", str(TAP_QUEUE), "up")
            if not linktc.has_clsact(device):
                self.entry["qdisc_added"] = True
                self._save()
                linktc.tool("tc", "qdisc", "add", "dev", device, "clsact")
            self.entry["filter"] = True
            self._save()
            linktc.tool("tc", "filter", "add", "dev", device, "egress", "pref", str(self.pref),
                        "protocol", "ip", "u32", "match", "ip", "dst", settings["peer"] + "/32",
                        "action", "mirred", "egress", "redirect", "dev", self.tap)
        except BaseException:
            try:
                self.down()
            except OSError as e:
                log.error("%s", e)
            raise
        described = self.describe()
        log.info("link to %s up: %s", settings["peer"], json.dumps(settings, sort_keys=True))
        if settings["limit"] <= described["in_flight_frames"]:
            log.warning("limit %d <= the %d full frames the link holds in its delay: the queue, not the "
                        "rate, will bound the throughput", settings["limit"], described["in_flight_frames"])
        return described

    def _start_forwarder(self, settings, device):
        s = settings
        argv = [sys.executable, "-I", facts.payload_path(), "link-forward", "--tap", self.tap,
                "--out", device, "--delay-ms", repr(s["delay_ms"]), "--rate-mbit", repr(s["rate_mbit"]),
                "--loss-pct", repr(s["loss_pct"]), "--limit", str(s["limit"]), "--seed", str(s["seed"]),
                "--parent", str(os.getpid()), "--journal", self.path]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/",
                                     start_new_session=True, close_fds=True)
        assert self.entry is not None  # journaled before the forwarder starts
        self.entry["pid"], self.entry["pid_start"] = self.proc.pid, _start_time(self.proc.pid)
        self._save()
        line = _read_line(self.proc, READY_TIMEOUT_S)
        if line != "ready":
            detail = line[len("error "):] if line.startswith("error ") else "no answer (%r)" % line[:200]
            raise OSError(errno.EIO, "the link forwarder did not start: %s" % detail)

    def _stop_forwarder(self):
        """Ask the forwarder for its counters and let it exit (killed when it does not answer).
        Returns (pid, counters)."""
        proc, counters = self.proc, None
        self.proc = None
        if proc is None:
            return None, None
        try:
            proc.stdin.write(b"stop\n")
            proc.stdin.close()
            line = _read_line(proc, STOP_TIMEOUT_S)
            counters = json.loads(line) if line.startswith("{") else None
        except (OSError, ValueError):
            pass
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if counters is None:
            log.error("the link forwarder (pid %d) gave no counters, exit %s", proc.pid, proc.returncode)
        return proc.pid, counters

    def down(self):
        """Take the link down; returns the link, what was removed and the forwarder's counters.
        Idempotent: with no link up it removes what a stale journal names, or nothing."""
        if self.entry is None:
            return self.cleanup_stale() or {"link": None, "removed": {}, "counters": None}
        entry, link = self.entry, self.describe()
        removed, errors = {}, []

        def attempt(key, step, label):
            try:
                removed[key] = label if step(entry) else None
            except OSError as e:
                removed[key] = None
                errors.append(str(e))

        had_tap = os.path.exists("/sys/class/net/%s" % entry["tap"])
        attempt("filter", linktc.remove_filter, "%s egress pref %d" % (entry["device"], entry["pref"]))
        removed["process"], counters = self._stop_forwarder()
        attempt("qdisc", linktc.remove_qdisc, "%s clsact" % entry["device"])
        attempt("device", linktc.remove_device, entry["tap"])
        if had_tap and not os.path.exists("/sys/class/net/%s" % entry["tap"]):
            removed["device"] = entry["tap"]  # it went with the forwarder's exit
        if errors:  # the journal stays: the next link_up or start tries again
            raise OSError(errno.EIO, "could not take the link down: %s" % "; ".join(errors))
        journal._remove(self.state_dir, JOURNAL)
        self.entry = None
        log.info("link to %s down: %s", link["peer"], json.dumps(counters, sort_keys=True))
        return {"link": link, "removed": removed, "counters": counters}

    def cleanup_stale(self):
        """At start: remove a link an earlier agent left (SIGKILLed, or its cleanup failed).
        Returns what was removed, or None when there was nothing."""
        entry = self._load()
        if entry is None:
            return None
        removed = {"process": _kill_stale(entry)}
        found = linktc.remove_filter(entry)
        removed["filter"] = "%s egress pref %s" % (entry["device"], entry["pref"]) if found else None
        removed["qdisc"] = "%s clsact" % entry["device"] if linktc.remove_qdisc(entry) else None
        removed["device"] = entry["tap"] if linktc.remove_device(entry) else None
        journal._remove(self.state_dir, JOURNAL)
        log.info("removed a stale link to %s: %s", entry.get("peer"), json.dumps(removed, sort_keys=True))
        return {"link": dict((k, entry.get(k)) for k in ("peer", "device", "tap", "pref", "pid")),
                "removed": removed, "counters": None}


def _read_line(proc, timeout):
    """One line from the forwarder, or "" after ``timeout`` seconds or at its exit."""
    if not select.select([proc.stdout], [], [], timeout)[0]:
        return ""
    return proc.stdout.readline().decode("utf-8", "replace").strip()
