"""Test files for ``tunefleet-service fileio``: what sysbench fileio writes into, made and removed
by the tool so a run leaves nothing behind. No server: ``setup`` runs ``sysbench fileio prepare``
in the instance folder (the benchmark's cwd), ``teardown`` removes the folder. Put the folder
(``--dir``) on the disk whose writeback is being tuned: /var/tmp by default, never a tmpfs if the
page cache's writeback is what matters. Stdlib only, Python >= 3.7.
"""

import re
import subprocess

from node_agent import facts
from node_agent.instance import Instance, ServiceError

KIND = "fileio"
PORT = None  # no server
SIZE_RE = re.compile(r"^[1-9][0-9]*[KMGT]?$")


def add_options(parser):
    parser.add_argument("--size", default="2G", help="total size of the test files (sysbench's --file-total-size; "
                                                     "default 2G)")
    parser.add_argument("--files", type=int, default=128, help="how many files (default 128)")


def check_options(args):
    if not SIZE_RE.match(args.size):
        raise ServiceError("--size must be a number with an optional K, M, G or T (e.g. 2G)")
    if not 1 <= args.files <= 4096:
        raise ServiceError("--files must be between 1 and 4096")
    return {"size": args.size, "files": args.files}


def instance(parent):
    return Instance(KIND, parent, ())


def _binary():
    path = facts.find_program("sysbench")
    if path is None:
        raise ServiceError("sysbench not found (searched PATH, /usr/local/sbin, /usr/sbin, /sbin): install it")
    return path


def precheck(inst, opts):
    _binary()


def setup(inst, opts):
    """sysbench fileio prepare in the instance folder, unless the same files are there already."""
    old = inst.load()
    if old == dict(opts, kind=KIND):
        return old, False
    argv = [_binary(), "fileio", "--file-total-size=%s" % opts["size"], "--file-num=%d" % opts["files"], "prepare"]
    done = subprocess.run(argv, cwd=inst.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=3600)
    if done.returncode != 0:
        tail = done.stdout.decode("utf-8", "replace").strip().splitlines()
        raise ServiceError("sysbench fileio prepare exited %d: %s" % (done.returncode, tail[-1] if tail else ""))
    return dict(opts), True


def describe(state):
    return "fileio on %s" % state["size"], "%d files" % state["files"]
