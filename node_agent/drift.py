"""Noticing that someone else changed a knob tunefleet tunes.

While tunefleet owns a knob on a host, the knob must hold what tunefleet last wrote there, or,
before its first write, the original the controller measured the baseline on (``watch``). An
administrator at a shell, configuration management (Ansible, Puppet), a TuneD profile or bpftune
may write it at any time. A benchmark measured after such a change would be credited to
tunefleet's value, and a restore would write the original over the other writer's choice. So
the agent checks before every apply, before and after every measured run and every quarter of a
second during one; the first difference stops the request with a ``Drift`` error that names the
knob, the value found, the value expected and the time window in which it changed (between the
last check that passed and the one that failed). From then on the knob is the other writer's:
it leaves the journal (a restore does not write it back, and reports it), and the agent refuses
to write it again. Stdlib only, Python >= 3.7.
"""

import time

CHECK_EVERY_S = 0.25  # during a benchmark


class Drift(Exception):
    """Knobs that someone else changed: ``found`` = {name: {"expected", "found", "since", "detected"}}."""

    def __init__(self, found):
        self.found = found
        Exception.__init__(self, describe(found))


def describe(found):
    parts = []
    for name in sorted(found):
        d = found[name]
        parts.append("%s is %s, tunefleet had %s there: changed by someone else between %s and %s" % (
            name, d["found"], d["expected"], _clock(d["since"]), _clock(d["detected"])))
    return "; ".join(parts)


def _clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t)) + ".%d" % int((t % 1) * 10) if t else "the start"


class Watch:
    """The values this agent expects (``watch``'s originals, then the journal's written values)
    and the knobs found changed by someone else."""

    def __init__(self, read):
        self.read = read          # name -> current value, or None when unreadable
        self.originals = {}       # name -> the value the controller measured on before any write
        self.drifted = {}         # name -> what check() found
        self.last_ok = None       # wall-clock time of the last check that passed
        self._next = 0.0

    def watch(self, values):
        for name, value in values.items():
            if name not in self.drifted:
                self.originals[name] = value
        if self.last_ok is None:
            self.last_ok = time.time()

    def check(self, expected):
        """Compare every expected knob with the host; raise Drift for those that differ."""
        found, now = {}, time.time()
        for name, value in expected.items():
            if name in self.drifted:
                continue
            current = self.read(name)
            if current is not None and current != value:
                found[name] = {"expected": value, "found": current, "since": self.last_ok, "detected": now}
        if found:
            self.drifted.update(found)
            for name in found:
                self.originals.pop(name, None)
            raise Drift(found)
        self.last_ok = now

    def due(self):
        """During a run: is it time for the next check?"""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + CHECK_EVERY_S
        return True
