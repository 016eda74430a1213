"""Redis for ``tunefleet-service``: an in-memory server on 127.0.0.1:PORT, nothing on disk.

No persistence (``save ""``, ``appendonly no``), so a start never loads old data and a stop
never writes any; ``tcp-backlog 65535`` so net.core.somaxconn is what caps the accept queue. Its
working folder is the instance folder, its log goes to stdout (the instance's log), and it runs
as the user who asked. ``reset`` empties it (FLUSHALL). Stdlib only, Python >= 3.7.
"""

import os
import re
import signal
import socket
import subprocess

from node_agent import facts
from node_agent.instance import Instance, ServiceError

KIND = "redis"
PORT = 16379


def add_options(parser):
    parser.add_argument("--io-threads", type=int, default=1,
                        help="I/O threads (Redis >= 6; default 1: the main thread does all I/O)")


def check_options(args):
    if not 1 <= args.io_threads <= 128:
        raise ServiceError("--io-threads must be between 1 and 128")
    return {"port": args.port, "io_threads": args.io_threads}


def instance(parent):
    return Instance(KIND, parent, ("redis-server",), signals=(signal.SIGTERM, signal.SIGTERM), grace=5.0)


def _version(path):
    out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30).stdout
    found = re.search(r"v=(\d+(?:\.\d+)*)", out.decode("utf-8", "replace"))
    if not found:
        raise ServiceError("%s --version did not say its version" % path)
    return found.group(1)


def config(inst, opts, version):
    lines = ["# made by tunefleet-service redis setup", "bind 127.0.0.1", "port %d" % opts["port"],
             "tcp-backlog 65535", "protected-mode yes", "daemonize no", "dir %s" % inst.path,
             'logfile ""', "loglevel notice", 'save ""', "appendonly no", "maxclients 10000"]
    major = int(version.split(".")[0])
    if opts["io_threads"] > 1:
        if major < 6:
            raise ServiceError("--io-threads needs Redis >= 6, this is %s" % version)
        lines += ["io-threads %d" % opts["io_threads"], "io-threads-do-reads yes"]
    return "\n".join(lines + [""])


def _binary():
    path = facts.find_program("redis-server")
    if path is None:
        raise ServiceError("redis-server not found (searched PATH, /usr/local/sbin, /usr/sbin, /sbin): install it")
    return path


def precheck(inst, opts):
    """Before anything is made: Redis is there."""
    _binary()


def setup(inst, opts):
    """Write the config; returns (state, changed)."""
    path = _binary()
    version = _version(path)
    text = config(inst, opts, version).encode()
    try:
        with open(inst.file("redis.conf"), "rb") as f:
            changed = f.read() != text
    except OSError:
        changed = True
    if changed:
        with open(inst.file("redis.conf"), "wb") as f:
            f.write(text)
    return dict(opts, binary=path, version=version), changed


def launch(inst, state):
    return inst.launch([state["binary"], inst.file("redis.conf")], env=dict(os.environ))


def command(port, *words):
    """One command in Redis's protocol; its first reply line (``+PONG``, ``-ERR ...``)."""
    request = b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w.encode()) for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode("utf-8", "replace").strip()


def ready(inst, state):
    """Redis answers PING (it accepts while it is still loading, and then answers -LOADING)."""
    def check():
        try:
            return command(state["port"], "PING") == "+PONG"
        except OSError:
            return False
    return check


def reset(inst, state, timeout):
    reply = command(state["port"], "FLUSHALL")
    if reply != "+OK":
        raise ServiceError("redis FLUSHALL answered %s" % (reply or "nothing"))
    return "redis emptied (FLUSHALL)"


def describe(state):
    threads = "%d io-threads" % state["io_threads"]
    return "redis %s on 127.0.0.1:%d" % (state["version"], state["port"]), threads
