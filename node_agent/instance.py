"""A private server instance of ``tunefleet-service``: its folder, its processes, start and stop.

Each instance lives in ``DIR/<kind>`` (DIR defaults to a folder per host and user under /var/tmp:
hosts of the local fleet share /var/tmp but not their hostname, and a real host keeps the data
on disk). Its processes are found by what they are, not only by a pid file: a process whose
name is the server's and whose working folder is the instance's (nginx and Redis run in the
instance folder, PostgreSQL in its data folder). So a stop also finds the workers an nginx master
killed by SIGKILL leaves behind, and never signals a pid that was reused by something else.
Stdlib only, Python >= 3.7.
"""

import json
import os
import pwd
import resource
import shutil
import signal
import socket
import stat
import subprocess
import time

from node_agent import journal

DEFAULT_BASE = "/var/tmp"
MARKER = ".tunefleet-service"   # written first into every instance folder: teardown removes only those
STATE = "setup.json"            # what the last complete setup made, written last
LOG = "server.log"
PIDFILE = "server.pid"
LOG_KEEP = 1 << 20              # the log is emptied at a start once it is larger
POLL_S = 0.01
KILL_WAIT_S = 5.0               # after SIGKILL
NOFILE = 65536                  # open files a server may have (connections)


class ServiceError(Exception):
    """One line for the user: what went wrong and, when it helps, what to do."""


def user_name(uid=None):
    uid = os.geteuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def default_dir():
    """``/var/tmp/tunefleet-services-<hostname>-<user>``: one per host of a fleet that shares
    /var/tmp, one per user (root's and the tuning user's instances never mix). Directly in the
    sticky /var/tmp, so no folder that another user created sits above it."""
    host = "".join(c if c.isalnum() or c in ".-_" else "_" for c in socket.gethostname())
    return os.path.join(DEFAULT_BASE, "tunefleet-services-%s-%s" % (host or "host", user_name()))


def _check_trusted(path):
    """Refuse a folder that someone other than root or us could swap under us: owned by another
    user, or writable by others without the sticky bit (a symlink was resolved before)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ServiceError("%s is not a folder" % path)
    if st.st_uid not in (0, os.geteuid()):
        raise ServiceError("refusing %s: it belongs to %s, not to root or %s" % (
            path, user_name(st.st_uid), user_name()))
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise ServiceError("refusing %s: others may write to it (mode %o)" % (path, st.st_mode & 0o7777))


def unreachable_by_others(path):
    """The first folder from / down to ``path`` that a server running as another user (nginx's
    workers as nobody, PostgreSQL as postgres) cannot traverse, else None (folders not made yet
    will be: 0755)."""
    parts = os.path.realpath(os.path.abspath(path)).split(os.sep)
    for i in range(2, len(parts) + 1):
        folder = os.sep.join(parts[:i])
        try:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return folder
        except FileNotFoundError:
            return None
    return None


class Instance:
    """The folder and processes of one kind of server: ``comms`` are its process names, ``work``
    the subfolder its processes run in (None: the instance folder), ``signals`` what stops its
    master and what stops a process left without one, ``grace`` how long before SIGKILL,
    ``leftovers(instance)`` what clears the traces a killed server leaves (a lock file)."""

    def __init__(self, kind, parent, comms, work=None, signals=(signal.SIGTERM, signal.SIGTERM), grace=5.0,
                 leftovers=None):
        self.leftovers = leftovers  # called once nothing runs: removes what a killed server left
        self.kind = kind
        self.parent = os.path.realpath(os.path.abspath(parent or default_dir()))
        self.path = os.path.join(self.parent, kind)
        self.cwd = os.path.join(self.path, work) if work else self.path
        self.comms = comms
        self.signals, self.grace = signals, grace

    def file(self, name):
        return os.path.join(self.path, name)

    def exists(self):
        return os.path.isfile(self.file(MARKER)) and not os.path.islink(self.path)

    def ensure(self):
        """Create the parent and the instance folder (0755) or check the ones there: trusted all
        the way down, and an instance folder that is ours (marked) or new."""
        parts = self.parent.split(os.sep)
        for i in range(2, len(parts) + 1):
            folder = os.sep.join(parts[:i])
            if not os.path.isdir(folder):
                try:
                    os.mkdir(folder, 0o755)
                except FileExistsError:
                    pass
            _check_trusted(folder)
        if not os.path.isdir(self.path):
            os.mkdir(self.path, 0o755)
        _check_trusted(self.path)
        if not self.exists():
            if os.listdir(self.path):
                raise ServiceError("refusing %s: a folder that tunefleet-service did not make" % self.path)
            with open(self.file(MARKER), "w") as f:
                f.write("made by tunefleet-service %s setup\n" % self.kind)
        os.chmod(self.path, 0o755)

    def load(self):
        """What the last complete setup recorded, or None."""
        try:
            with open(self.file(STATE)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def save(self, state):
        journal.write_file_atomic(self.file(STATE), json.dumps(state, indent=1, sort_keys=True).encode(), 0o644)

    def forget(self):
        """Mark the setup incomplete before changing what it made (a crash then redoes it)."""
        try:
            os.unlink(self.file(STATE))
        except FileNotFoundError:
            pass

    # -- processes ------------------------------------------------------------------------------

    def _ours(self, pid):
        """``pid`` is a live process of this instance: the server's name and working folder."""
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() not in self.comms:
                    return False
            where = os.readlink("/proc/%d/cwd" % pid)
        except OSError:  # gone, a zombie, or another user's
            return False
        return where in (self.cwd, self.cwd + " (deleted)")

    def processes(self):
        """Pids of this instance's processes, the master first."""
        found = [int(p) for p in os.listdir("/proc") if p.isdigit() and self._ours(int(p))]
        master = self.master()
        return sorted(found, key=lambda p: (p != master, p))

    def master(self):
        try:
            with open(self.file(PIDFILE)) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def launch(self, argv, env, preexec=None):
        """Start the server in its own session and working folder with stdin from /dev/null,
        stdout and stderr to the instance's log, no other descriptor: it outlives this helper,
        and the agent's pipes reach EOF when the helper exits. Its open-files limit is raised to
        the hard limit (at most NOFILE) first. The caller made sure none of the instance's
        processes runs. Returns (Popen, log offset where its output begins)."""
        self.clear()
        _raise_nofile()
        log = self.file(LOG)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            if os.fstat(fd).st_size > LOG_KEEP:
                os.ftruncate(fd, 0)
            offset = os.fstat(fd).st_size
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, cwd=self.cwd, env=env,
                                    close_fds=True, start_new_session=True, preexec_fn=preexec)
        except OSError as e:
            raise ServiceError("cannot start %s: %s" % (argv[0], e.strerror or e)) from None
        finally:
            os.close(fd)
        journal.write_file_atomic(self.file(PIDFILE), b"%d\n" % proc.pid, 0o644)
        return proc, offset

    def log_tail(self, offset=0, lines=3):
        """The last lines the server wrote since ``offset``, joined into one line."""
        try:
            fd = os.open(self.file(LOG), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return "no log"
        try:
            size = os.fstat(fd).st_size
            os.lseek(fd, max(offset, size - 4096), os.SEEK_SET)
            text = os.read(fd, 4096).decode("utf-8", "replace")
        finally:
            os.close(fd)
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail) if tail else "nothing in %s" % self.file(LOG)

    def wait_ready(self, proc, offset, port, timeout, ready=None):
        """Until 127.0.0.1:port accepts (and ``ready()``, when given, says so), within ``timeout``
        seconds; a server that exits or never comes up is stopped and reported with its log."""
        deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise ServiceError("%s exited with %d at start: %s" % (self.kind, code, self.log_tail(offset)))
            if port_open(port) and (ready is None or ready()):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError("%s did not accept on 127.0.0.1:%d within %g s: %s" % (
                    self.kind, port, timeout, self.log_tail(offset)))
            time.sleep(POLL_S)

    def stop(self):
        """Stop every process of the instance: the master's signal to the master (its pid file,
        checked), the other signal to each process when no master is left (workers of a killed
        master); SIGKILL to what remains after the grace. Returns (pids, how) or None when
        nothing ran."""
        pids = self.processes()
        if not pids:
            self.clear()
            return None
        master = self.master()
        targets = [(master, self.signals[0])] if master in pids else [(p, self.signals[1]) for p in pids]
        how = signal.Signals(targets[0][1]).name
        for pid, sig in targets:
            _kill(pid, sig)
        left = self._wait_gone(pids, self.grace)
        if left:
            how += ", then SIGKILL"
            for pid in left:
                _kill(pid, signal.SIGKILL)
            left = self._wait_gone(left, KILL_WAIT_S)
        late = [p for p in self.processes() if p not in pids]  # forked while it stopped
        for pid in late:
            _kill(pid, signal.SIGKILL)
        left = self._wait_gone(left + late, KILL_WAIT_S)
        if left:
            raise ServiceError("%s: processes %s survived SIGKILL" % (self.kind, " ".join(map(str, left))))
        self.clear()
        return pids, how

    def _wait_gone(self, pids, timeout):
        """Pids still alive (and still this instance's) after up to ``timeout`` seconds; a zombie
        counts as gone (its parent, init, may reap it late)."""
        deadline = time.monotonic() + timeout
        while True:
            left = [p for p in pids if self._ours(p)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(POLL_S)

    def clear(self):
        """Once no process of the instance runs: its pid file and the server's own leftovers go
        (a stale pid may meanwhile belong to another process, or to a zombie init has not reaped)."""
        try:
            os.unlink(self.file(PIDFILE))
        except OSError:
            pass
        if self.leftovers and os.path.isdir(self.path):
            self.leftovers(self)

    def remove(self):
        """Delete the instance folder (only a marked one) and the parent when it is empty."""
        if os.path.lexists(self.path):
            if not self.exists():
                raise ServiceError("refusing to remove %s: a folder that tunefleet-service did not make" % self.path)
            shutil.rmtree(self.path)
        try:
            os.rmdir(self.parent)
        except OSError:
            pass


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(hard, NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def port_open(port, host="127.0.0.1"):
    """Something accepts TCP connections on host:port."""
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False
