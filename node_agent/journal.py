"""The originals journal and the state-folder lock.

Before the first write of a knob its original value is added to ``journal.json`` in the state
folder (tmp file + fsync + rename + fsync of the folder), so a crash at any point leaves a record
of what to put back. Restores go in reverse order of first change. ``journal.kept.json`` holds the
originals of values the controller chose to keep (``bye {"keep": true}``). A lock on
``agent.lock`` lets one agent at a time own the folder. Stdlib only, Python >= 3.7.
"""

import errno
import fcntl
import json
import logging
import os
import time

JOURNAL = "journal.json"
KEPT = "journal.kept.json"
LOCK = "agent.lock"
FORMAT = 1

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
        raise Locked(errno.EBUSY, "another agent (pid %s) holds %s" % (holder, path))
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
    """Entries ``[[name, original], ...]`` and the boot_id of a journal file, or None."""
    path = os.path.join(directory, name)
    try:
        with open(path) as f:
            document = json.load(f)
        entries = [(str(k), str(v)) for k, v in document["entries"]]
        return entries, str(document.get("boot_id", ""))
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
        self.discarded = None  # {"boot_id", "originals"} of this file when it was from an earlier boot

    def names(self):
        return [name for name, _ in self.entries]

    def _save(self):
        if self.entries:
            _write_atomic(self.state_dir, self.filename, {
                "format": FORMAT, "boot_id": self.boot_id, "pid": os.getpid(),
                "updated": time.time(), "entries": [list(e) for e in self.entries]})
        else:
            _remove(self.state_dir, self.filename)

    def _load_same_boot(self, what):
        """Entries of this journal's file if written during this boot; an older one is removed."""
        loaded = _load(self.state_dir, self.filename)
        if loaded is None:
            return []
        entries, boot_id = loaded
        if boot_id != self.boot_id:
            log.info("discarding %s %s from an earlier boot (%s): %d knob(s) already reset by "
                     "the reboot", what, self.filename, boot_id or "unknown", len(entries))
            _remove(self.state_dir, self.filename)
            self.discarded = {"boot_id": boot_id, "originals": dict(entries)}
            return []
        return entries

    def record(self, originals):
        """Journal ``[(name, original)]`` not journaled yet; on disk before this returns."""
        known = set(self.names())
        new = [(n, v) for n, v in originals if n not in known]
        if new:
            self.entries.extend(new)
            try:
                self._save()
            except OSError:
                del self.entries[-len(new):]
                raise

    def restore(self, write, names=None, read=None):
        """Write back originals (all, or ``names``) in reverse order of first change.

        ``write(name, value)`` raises on failure; ``read(name)``, when given, is asked first (it may
        raise too), and a knob already at its original is not written. Returns a report: ``restored`` and
        ``unchanged`` ({name: original}), ``errors`` ({name: {"errno", "message"}}). A knob that
        could not be written stays journaled, unless it no longer exists (nothing left to restore).
        """
        report = {"restored": {}, "unchanged": {}, "errors": {}}
        keep = []
        wanted = None if names is None else set(names)
        if wanted is not None:  # a coupled pair is restored together
            wanted.update(self.coupled[n] for n in list(wanted) if n in self.coupled)
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
                if read is not None and read(name) == original:
                    report["unchanged"][name] = original
                    continue
                write(name, original)
                report["restored"][name] = original
            except Exception as e:  # one knob failing never stops the others
                code = getattr(e, "errno", None)
                report["errors"][name] = {"errno": code, "message": str(e)}
                if code != errno.ENOENT:
                    keep.append((name, original))
        self.entries = list(reversed(keep))
        self._save()
        return report

    def kept(self):
        """The journal of kept originals (``journal.kept.json``) of this boot."""
        kept = Journal(self.state_dir, self.boot_id, KEPT, self.coupled)
        kept.entries = kept._load_same_boot("kept journal")
        return kept

    def keep(self):
        """Leave the applied values in place: move the originals to ``journal.kept.json``.
        Originals kept by an earlier session win (they are older). Returns the names moved."""
        moved = self.names()
        if moved:
            kept = self.kept()
            known = set(kept.names())
            kept.entries.extend((n, v) for n, v in self.entries if n not in known)
            kept._save()
            self.entries = []
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
        self.entries = self._load_same_boot("stale journal")
        discarded = dict((book.filename, book.discarded) for book in (self, self.kept()) if book.discarded)
        if self.entries:
            log.info("restoring %d knob(s) from a stale %s", len(self.entries), self.filename)
            report = self.restore(write, read=read)
        else:
            report = {"restored": {}, "unchanged": {}, "errors": {}}
        report["discarded"] = discarded
        return report
