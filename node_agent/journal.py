"""The originals journal and the state-folder lock.

Before the first write of a knob its original value is added to ``journal.json`` in the state
folder (tmp file + fsync + rename + fsync of the folder), so a crash at any point leaves a record
of what to put back. Before every write the value about to be written is recorded too
(``written``; with ``previous``, what tunefleet had there before, for a crash between the record and
the write): a restore writes an original back only over a value tunefleet wrote. A knob that holds
anything else was changed by someone else since (an administrator, configuration management, a
tuning daemon): it is left as they set it and reported as ``foreign``, never overwritten.
Restores go in reverse order of first change. ``journal.kept.json`` holds the originals of values
the controller chose to keep (``bye {"keep": true}``). Journals of an earlier boot are never
written back (the reboot reset those knobs); they move to ``journal.earlier.json``, which says what
the reboot undid until a ``restore`` has reported it. A lock on ``agent.lock`` lets one agent at a
time own the folder. Stdlib only, Python >= 3.7.
"""

import errno
import fcntl
import json
import logging
import os
import time

JOURNAL = "journal.json"
KEPT = "journal.kept.json"
EARLIER = "journal.earlier.json"
LOCK = "agent.lock"
FORMAT = 2

log = logging.getLogger("tunefleet.agent")


class Locked(OSError):
    """Another agent holds the state folder."""


def read_boot_id(path="/proc/sys/kernel/random/boot_id"):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def take_lock(state_dir):
    """Open and lock ``agent.lock`` (kept open for the life of the agent); write our pid in it.

    Raises Locked naming the holder's pid when another agent has it.
    """
    path = os.path.join(state_dir, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            os.close(fd)
            raise
        holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise Locked(errno.EBUSY, "another agent (pid %s) holds %s" % (holder, path)) from e
    os.ftruncate(fd, 0)
    os.write(fd, ("%d\n" % os.getpid()).encode("ascii"))
    return fd


def _write_atomic(directory, name, document):
    data = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
    write_file_atomic(os.path.join(directory, name), data, 0o600)


def write_file_atomic(path, data, mode):
    """Write bytes so no reader and no crash ever sees half a file: tmp, fsync, rename, fsync dir."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


def remove_file(directory, name):
    """Delete ``name`` from ``directory`` if it is there, durably (the folder is fsynced)."""
    _remove(directory, name)


def _remove(directory, name):
    try:
        os.unlink(os.path.join(directory, name))
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
    else:
        _fsync_dir(directory)


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load(directory, name):
    """A journal file as {"entries": [(name, original)], "boot_id", "written", "previous",
    "foreign"}, or None. A format-1 file (entries and boot_id only) reads as one."""
    path = os.path.join(directory, name)
    try:
        with open(path) as f:
            document = json.load(f)
        entries = [(str(e[0]), str(e[1])) for e in document["entries"]]
        maps = dict((key, dict((str(k), str(v)) for k, v in (document.get(key) or {}).items()))
                    for key in ("written", "previous"))
        foreign = dict((str(k), v) for k, v in (document.get("foreign") or {}).items() if isinstance(v, dict))
        return dict(maps, entries=entries, boot_id=str(document.get("boot_id", "")), foreign=foreign)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    except (ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable %s: %s", path, e)
        return None


class Journal:
    """Originals of the knobs this agent changed, in order of first change, mirrored on disk."""

    def __init__(self, state_dir, boot_id, filename=JOURNAL, coupled=None):
        self.state_dir = state_dir
        self.boot_id = boot_id
        self.filename = filename
        self.coupled = coupled or {}  # name -> the knob the kernel zeroes when name is written
        self.entries = []  # [(name, original)] in order of first change
        self.written = {}  # name -> the value tunefleet last wrote (as read back)
        self.previous = {}  # name -> what tunefleet had there before a write that may not have happened
        self.foreign = {}  # name -> {"original", "ours", "found", ...}: changed by someone else, left alone
        self.discarded = None  # {"boot_id", "originals", "written"} of this file when it was from an earlier boot

    def names(self):
        return [name for name, _ in self.entries]

    def _save(self):
        if self.entries or self.foreign:
            journaled = set(self.names())
            _write_atomic(self.state_dir, self.filename, {
                "format": FORMAT, "boot_id": self.boot_id, "pid": os.getpid(),
                "updated": time.time(), "entries": [list(e) for e in self.entries],
                "written": dict((k, v) for k, v in self.written.items() if k in journaled),
                "previous": dict((k, v) for k, v in self.previous.items() if k in journaled),
                "foreign": self.foreign})
        else:
            _remove(self.state_dir, self.filename)

    def _take(self, loaded):
        self.entries, self.written, self.previous = loaded["entries"], loaded["written"], loaded["previous"]
        self.foreign = loaded["foreign"]

    def _load_same_boot(self, what):
        """Load this journal's file if written during this boot; one of an earlier boot is moved to
        ``journal.earlier.json`` (never written back) and noted in ``discarded``."""
        loaded = _load(self.state_dir, self.filename)
        if loaded is None:
            return self
        if loaded["boot_id"] != self.boot_id:
            log.info("discarding %s %s from an earlier boot (%s): %d knob(s) already reset by "
                     "the reboot", what, self.filename, loaded["boot_id"] or "unknown", len(loaded["entries"]))
            self.discarded = {"boot_id": loaded["boot_id"], "originals": dict(loaded["entries"]),
                              "written": loaded["written"]}
            earlier = read_earlier(self.state_dir)
            earlier[self.filename] = self.discarded
            _write_atomic(self.state_dir, EARLIER, earlier)
            _remove(self.state_dir, self.filename)
            return self
        self._take(loaded)
        return self

    def record(self, originals, intended=None):
        """Journal ``[(name, original)]`` not journaled yet, and ``intended`` ({name: value}), the
        values about to be written; on disk before this returns."""
        known = set(self.names())
        new = [(n, v) for n, v in originals if n not in known]
        if not new and not intended:
            return
        before = (list(self.entries), dict(self.written), dict(self.previous))
        self.entries.extend(new)
        base = dict(self.entries)
        for name, value in (intended or {}).items():
            self.previous[name] = self.written.get(name, base.get(name))
            self.written[name] = value
        try:
            self._save()
        except OSError:
            self.entries, self.written, self.previous = before
            raise

    def settle(self, name, value):
        """The write of ``name`` is done and reads back as ``value``: only that is tunefleet's now."""
        self.previous.pop(name, None)
        if name in dict(self.entries) and self.written.get(name) != value:
            self.written[name] = value
            self._save()

    def expected(self):
        """name -> the value each journaled knob must hold while tunefleet owns it."""
        return dict((n, self.written.get(n, o)) for n, o in self.entries)

    def mark_foreign(self, found):
        """Knobs someone else changed ({name: {"found", ...}}): out of the journal, never written back."""
        originals = dict(self.entries)
        hit = [n for n in found if n in originals]
        for name in hit:
            self.foreign[name] = dict(found[name], original=originals[name], ours=self.written.get(name))
        if hit:
            self.entries = [(n, o) for n, o in self.entries if n not in hit]
            self._save()

    def _ours(self, name, original, recovering):
        """The values a restore may write over: what tunefleet wrote (and, recovering, what it had
        there before). None: anything, for a knob journaled before writes were recorded (a
        format-1 journal of an older agent): tunefleet cannot tell its own value from another's."""
        if name not in self.written:
            return None
        mine = set([self.written[name]])
        if recovering and self.previous.get(name) is not None:
            mine.add(self.previous[name])
        return mine

    def restore(self, write, names=None, read=None, recovering=False):
        """Write back originals (all, or ``names``) in reverse order of first change.

        ``write(name, value)`` raises on failure; ``read(name)``, when given, is asked first (it may
        raise too): a knob already at its original is not written, and one that holds neither its
        original nor what tunefleet wrote was changed by someone else and is left as it is. Returns
        a report: ``restored`` and ``unchanged`` ({name: original}), ``errors`` ({name: {"errno",
        "message"}}), ``foreign`` ({name: {"found", "ours", "original"}}). A knob that could not be
        written stays journaled, unless it no longer exists (nothing left to restore). With
        ``recovering`` (a stale journal of a crashed agent) a value written just before the crash may
        not have reached the kernel: what tunefleet had there before counts as its own too.
        """
        report: dict = {"restored": {}, "unchanged": {}, "errors": {}, "foreign": {}}
        keep = []
        wanted = None if names is None else set(names)
        if wanted is not None:  # a coupled pair is restored together
            wanted.update(self.coupled[n] for n in list(wanted) if n in self.coupled)
        for name in [n for n in self.foreign if wanted is None or n in wanted]:
            report["foreign"][name] = self.foreign.pop(name)
        originals = dict(self.entries)
        for name, original in reversed(self.entries):
            if wanted is not None and name not in wanted:
                keep.append((name, original))
                continue
            partner = self.coupled.get(name)
            if original == "0" and originals.get(partner, "0") != "0":
                report["restored"][name] = original  # the kernel zeroes it when the partner is written
                continue
            try:
                current = read(name) if read is not None else None
                if read is not None and current == original:
                    report["unchanged"][name] = original
                    continue
                mine = self._ours(name, original, recovering)
                if current is not None and mine is not None and current not in mine:
                    report["foreign"][name] = {"found": current, "ours": self.written.get(name), "original": original}
                    continue
                write(name, original)
                report["restored"][name] = original
            except Exception as e:  # noqa: BLE001 - one knob failing never stops the others
                code = getattr(e, "errno", None)
                report["errors"][name] = {"errno": code, "message": str(e)}
                if code != errno.ENOENT:
                    keep.append((name, original))
        self.entries = list(reversed(keep))
        journaled = set(self.names())
        self.written = dict((k, v) for k, v in self.written.items() if k in journaled)
        self.previous = dict((k, v) for k, v in self.previous.items() if k in journaled)
        self._save()
        return report

    def kept(self):
        """The journal of kept originals (``journal.kept.json``) of this boot."""
        return Journal(self.state_dir, self.boot_id, KEPT, self.coupled)._load_same_boot("kept journal")

    def keep(self):
        """Leave the applied values in place: move the originals (and what was written) to
        ``journal.kept.json``. Originals kept by an earlier session win (they are older); the value
        kept is this session's. Returns the names moved."""
        moved = self.names()
        if moved:
            kept = self.kept()
            known = set(kept.names())
            kept.entries.extend((n, v) for n, v in self.entries if n not in known)
            kept.written.update(self.expected())
            kept.foreign.update(self.foreign)
            kept._save()
            self.entries, self.written, self.previous, self.foreign = [], {}, {}, {}
            self._save()
        return moved

    def restore_kept(self, write, names=None, read=None):
        """Undo this session's changes, then put back the kept originals (all, or ``names``)."""
        report = self.restore(write, names, read)
        more = self.kept().restore(write, names, read)
        for key, values in more.items():
            report[key].update(values)
        return report

    def recover(self, write, read=None):
        """At start: restore a stale journal left by an agent that died during this boot.

        Journals written during an earlier boot (this one and the kept one) are discarded, never
        written back: the reboot put each knob at its boot value (the kernel's default or a
        sysctl.d drop-in), and the old originals would change the host, not restore it. Returns a
        ``restore`` report plus ``discarded``: {file name: {"boot_id", "originals"}}."""
        self._load_same_boot("stale journal")
        self.kept()  # an earlier boot's kept journal moves aside too
        if self.entries or self.foreign:
            log.info("restoring %d knob(s) from a stale %s", len(self.entries), self.filename)
            report = self.restore(write, read=read, recovering=True)
        else:
            report = {"restored": {}, "unchanged": {}, "errors": {}, "foreign": {}}
        report["discarded"] = read_earlier(self.state_dir)
        return report


def read_earlier(state_dir):
    """``journal.earlier.json``: {journal file: {"boot_id", "originals", "written"}} of journals that
    a reboot made void, kept until a restore has reported them ({} when there are none)."""
    path = os.path.join(state_dir, EARLIER)
    try:
        with open(path) as f:
            document = json.load(f)
        return dict((k, v) for k, v in document.items() if isinstance(v, dict) and "originals" in v)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return {}
        raise
    except ValueError:
        log.warning("ignoring unreadable %s", path)
        return {}


def forget_earlier(state_dir):
    """The journals of earlier boots have been reported: remove their record."""
    _remove(state_dir, EARLIER)
