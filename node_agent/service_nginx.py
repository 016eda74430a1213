"""nginx for ``tunefleet-service``: one static file served on 127.0.0.1:PORT.

Everything the server reads or writes is in the instance folder: its config, pid, lock and temp
folders (never /run/nginx.pid, /var/lib/nginx or /var/log/nginx of the host's own nginx), the
file it serves, its log on stderr. The listen backlog is 65535, so net.core.somaxconn is what
caps the accept queue, as in a tuned production config. Started as root, the workers run as
``nobody`` (the master keeps root only to bind). Stdlib only, Python >= 3.7.
"""

import grp
import os
import pwd
import re
import resource
import signal
import subprocess

from node_agent import facts
from node_agent.instance import NOFILE, Instance, ServiceError, unreachable_by_others

KIND = "nginx"
PORT = 18080
WORKER_USERS = ("nobody", "www-data", "nginx")
TEMP_MODULES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def add_options(parser):
    parser.add_argument("--workers", default="auto",
                        help="worker processes: a number or auto, one per CPU (default auto, as distributions ship it)")
    parser.add_argument("--file-kb", type=int, default=4, help="size of the static file served at / (default 4)")
    parser.add_argument("--keepalive-requests", type=int, default=1000,
                        help="requests per keep-alive connection (default 1000)")


def check_options(args):
    if args.workers != "auto" and not (args.workers.isdigit() and 1 <= int(args.workers) <= 256):
        raise ServiceError("--workers must be auto or a number from 1 to 256")
    if not 0 <= args.file_kb <= 1 << 20:
        raise ServiceError("--file-kb must be between 0 and 1048576")
    if not 1 <= args.keepalive_requests <= 1 << 30:
        raise ServiceError("--keepalive-requests must be a positive number")
    return {"port": args.port, "workers": args.workers, "file_kb": args.file_kb,
            "keepalive_requests": args.keepalive_requests}


def instance(parent):
    return Instance(KIND, parent, ("nginx",), signals=(signal.SIGTERM, signal.SIGTERM), grace=5.0)


def _binary():
    path = facts.find_program("nginx")
    if path is None:
        raise ServiceError("nginx not found (searched PATH, /usr/local/sbin, /usr/sbin, /sbin): install it")
    return path


def _build(path):
    """(version, configure arguments) of the nginx binary at ``path``."""
    out = subprocess.run([path, "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30).stdout
    text = out.decode("utf-8", "replace")
    version = re.search(r"nginx/(\d+(?:\.\d+)*)", text)
    if not version:
        raise ServiceError("%s -V did not say its version: %s" % (path, text.strip()[:200]))
    return version.group(1), text


def _worker_user():
    """(user, group) for the workers of a master that runs as root."""
    for name in WORKER_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        try:
            return name, grp.getgrgid(entry.pw_gid).gr_name
        except KeyError:
            continue
    raise ServiceError("nginx as root needs an unprivileged user for its workers (%s): none exists" %
                       ", ".join(WORKER_USERS))


def config(inst, opts, build, nofile):
    """The text of nginx.conf for ``opts``; ``build`` is nginx -V's output (which temp folders
    exist depends on the modules compiled in)."""
    temps = ["client_body_temp_path %s;" % inst.file("tmp/client_body")]
    temps += ["%s_temp_path %s;" % (m, inst.file("tmp/" + m)) for m in TEMP_MODULES[1:]
              if "--without-http_%s_module" % m not in build]
    lines = ["# made by tunefleet-service nginx setup", "daemon off;", "master_process on;",
             "worker_processes %s;" % opts["workers"], "worker_rlimit_nofile %d;" % nofile,
             "pid %s;" % inst.file("nginx.pid"), "lock_file %s;" % inst.file("nginx.lock"),
             "error_log stderr warn;"]
    if os.geteuid() == 0:
        lines.append("user %s %s;" % _worker_user())
    lines += ["events {", "    worker_connections %d;" % max(512, nofile // 2), "}", "http {",
              "    access_log off;", "    sendfile on;", "    tcp_nopush on;", "    tcp_nodelay on;",
              "    keepalive_timeout 65;", "    keepalive_requests %d;" % opts["keepalive_requests"],
              "    types { text/html html; }", "    default_type application/octet-stream;"]
    lines += ["    " + t for t in temps]
    lines += ["    server {", "        listen 127.0.0.1:%d backlog=65535;" % opts["port"],
              "        root %s;" % inst.file("html"), "        location / { }", "    }", "}", ""]
    return "\n".join(lines)


def _write_if_changed(path, data, mode=0o644):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except OSError:
        pass
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return True


def precheck(inst, opts):
    """Before anything is made: nginx is there, and workers that run as another user can reach
    the file they serve."""
    _binary()
    if os.geteuid() == 0:
        blocked = unreachable_by_others(inst.path)
        if blocked:
            raise ServiceError("nginx workers run as %s and cannot reach %s: pass a --dir that others "
                               "may traverse" % (_worker_user()[0], blocked))


def setup(inst, opts):
    """Write the config and the static file; returns (state, changed)."""
    path = _binary()
    version, build = _build(path)
    for sub in ("html", "tmp"):
        if not os.path.isdir(inst.file(sub)):
            os.mkdir(inst.file(sub), 0o755)
    body = (b"tunefleet static file\n" + b"x" * (1 << 20))[:opts["file_kb"] * 1024]
    changed = _write_if_changed(inst.file("html/index.html"), body)
    changed |= _write_if_changed(inst.file("nginx.conf"), config(inst, opts, build, _nofile()).encode())
    state = dict(opts, binary=path, version=version)
    test = subprocess.run(_argv(inst, state) + ["-t", "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=30, cwd=inst.path)
    if test.returncode != 0:
        lines = [ln for ln in test.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise ServiceError("nginx -t refused the config: %s" % (lines[-1] if lines else "exit %d" % test.returncode))
    return state, changed


def _nofile():
    """Open files per worker: up to the hard limit (raising it needs CAP_SYS_RESOURCE, which
    root in a container may lack; nginx would log an alert per worker)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE if hard == resource.RLIM_INFINITY else min(hard, NOFILE)


def _argv(inst, state):
    """nginx with the instance's prefix and config; ``-e stderr`` (nginx >= 1.19.5) keeps it from
    opening the compiled-in error log (the host nginx's /var/log/nginx/error.log) before it reads
    the config."""
    argv = [state["binary"], "-p", inst.path + "/", "-c", inst.file("nginx.conf")]
    if tuple(int(p) for p in state["version"].split(".")[:3]) >= (1, 19, 5):
        argv[1:1] = ["-e", "stderr"]
    return argv


def launch(inst, state):
    return inst.launch(_argv(inst, state), env=dict(os.environ))


def describe(state):
    # auto: as nginx counts CPUs
    workers = (os.cpu_count() or 1) if state["workers"] == "auto" else int(state["workers"])
    return "nginx %s on 127.0.0.1:%d" % (state["version"], state["port"]), "%d workers" % workers
