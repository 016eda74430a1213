"""PostgreSQL for ``tunefleet-service``: a private cluster on 127.0.0.1:PORT with pgbench's tables.

The instance folder holds the config (postgresql.conf, pg_hba.conf: the data folder's own are not
used), ``data`` (initdb) and ``run`` (the Unix socket, never the host's /run/postgresql). Setup
makes a role and database ``pgbench`` filled by ``pgbench -i -s SCALE``. Only that role, to that
database, gets in without a password, over 127.0.0.1 or the socket; the superuser only through
the socket, as its own OS user (peer). PostgreSQL refuses to run as root, so a helper running as
root runs every PostgreSQL program as ``postgres``. Stdlib only, Python >= 3.7.
"""

import os
import pwd
import re
import shutil
import signal
import subprocess

from node_agent import facts
from node_agent.instance import Instance, ServiceError, unreachable_by_others

KIND = "postgres"
PORT = 15432
ROLE = "pgbench"
SOCKET_MAX = 107  # sun_path
TIMEOUT_S = 600.0


def add_options(parser):
    parser.add_argument("--scale", type=int, default=5, help="pgbench -i scale (default 5: 500000 accounts)")
    parser.add_argument("--shared-buffers", default="128MB", help="shared_buffers (default 128MB)")
    parser.add_argument("--max-connections", type=int, default=100, help="max_connections (default 100)")
    parser.add_argument("--fsync", choices=("on", "off"), default="on", help="fsync (default on)")


def check_options(args):
    if not 1 <= args.scale <= 10000:
        raise ServiceError("--scale must be between 1 and 10000")
    if not re.match(r"^[0-9]+(kB|MB|GB)?$", args.shared_buffers):
        raise ServiceError("--shared-buffers must be a size such as 128MB, 1GB or 16384 (8 kB pages)")
    if not 1 <= args.max_connections <= 10000:
        raise ServiceError("--max-connections must be between 1 and 10000")
    return {"port": args.port, "scale": args.scale, "shared_buffers": args.shared_buffers,
            "max_connections": args.max_connections, "fsync": args.fsync}


def instance(parent):
    # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave); a
    # process left without its postmaster gets SIGTERM.
    return Instance(KIND, parent, ("postgres", "postmaster"), work="data",
                    signals=(signal.SIGINT, signal.SIGTERM), grace=30.0, leftovers=leftovers)


def server_user():
    """The password entry PostgreSQL runs as when this helper runs as root; None: as we are."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError("PostgreSQL refuses to run as root and there is no user postgres to run it as: "
                           "create it (useradd --system postgres)") from None


def _superuser():
    user = server_user()
    return user.pw_name if user else pwd.getpwuid(os.geteuid()).pw_name


def binaries():
    """postgres, initdb, psql and pgbench, from the server's own folder where they are there (a
    client of the same version; Debian's /usr/bin/psql is a wrapper that picks one)."""
    server = facts.find_program("postgres")
    if server is None:
        raise ServiceError("postgres (the PostgreSQL server) not found (searched PATH, /usr/local/sbin, "
                           "/usr/sbin, /sbin, /usr/lib/postgresql/*/bin): install it")
    found = {"postgres": server}
    home = os.path.dirname(os.path.realpath(server))  # /usr/local/bin/postgres may be a link into its version's folder
    for name in ("initdb", "psql", "pgbench"):
        near = os.path.join(home, name)
        found[name] = near if os.access(near, os.X_OK) else facts.find_program(name)
        if found[name] is None:
            raise ServiceError("%s not found beside %s or on PATH: install it" % (name, server))
    return found


def _env(user):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("PG"))
    if user:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return env


def _preexec(user):
    return (lambda: facts.become(user)) if user else None


def run(inst, argv, what, timeout=TIMEOUT_S):
    """Run a PostgreSQL program as the server's user; its stdout, or ServiceError with the last
    line it wrote."""
    user = server_user()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=_env(user), cwd=inst.path,
                           timeout=timeout, preexec_fn=_preexec(user))
    except subprocess.TimeoutExpired:
        raise ServiceError("%s did not finish within %g s" % (what, timeout)) from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or p.stdout).decode("utf-8", "replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else "no output"
        raise ServiceError("%s failed (exit %d): %s" % (what, p.returncode, last))
    return p.stdout.decode("utf-8", "replace")


def psql(inst, state, port, db, *sql, **kw):
    argv = [state["psql"], "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", inst.file("run"),
            "-p", str(port), "-U", _superuser(), "-d", db]
    for statement in sql:
        argv += ["-c", statement]
    return run(inst, argv, "psql %s" % sql[0].split()[0], kw.get("timeout", TIMEOUT_S)).strip()


def _version(path):
    out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, timeout=30).stdout.decode("utf-8", "replace")
    found = re.search(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?", out)
    if not found:
        raise ServiceError("%s --version did not say its version" % path)
    return found.group(1) + ("." + found.group(2) if found.group(2) else "")


def config_files(inst, opts):
    """{name: text} of the config in the instance folder (postgres reads it with -c config_file)."""
    conf = ["# made by tunefleet-service postgres setup", "listen_addresses = '127.0.0.1'",
            "port = %d" % opts["port"], "unix_socket_directories = '%s'" % inst.file("run"),
            "hba_file = '%s'" % inst.file("pg_hba.conf"), "max_connections = %d" % opts["max_connections"],
            "shared_buffers = '%s'" % opts["shared_buffers"], "fsync = %s" % opts["fsync"],
            "logging_collector = off", "log_destination = 'stderr'", ""]
    hba = ["# made by tunefleet-service postgres setup: pgbench to its database without a password,",
           "# the superuser only as its own OS user over the socket (in a folder only it can enter)",
           "local pgbench %s trust" % ROLE, "host pgbench %s 127.0.0.1/32 trust" % ROLE,
           "local all all peer", ""]
    return {"postgresql.conf": "\n".join(conf), "pg_hba.conf": "\n".join(hba)}


def _folders(inst, user):
    """data and run (the socket), 0700 and the server user's."""
    for sub in ("data", "run"):
        path = inst.file(sub)
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
        if user:
            os.chown(path, user.pw_uid, user.pw_gid)


def precheck(inst, opts):
    """Before anything is made: the programs, a user to run them as, a folder it can reach, and
    a socket path the kernel takes."""
    user = server_user()
    binaries()
    blocked = unreachable_by_others(inst.path) if user else None
    if blocked:
        raise ServiceError("PostgreSQL runs as postgres and cannot reach %s: pass a --dir that others may "
                           "traverse" % blocked)
    socket = os.path.join(inst.file("run"), ".s.PGSQL.%d" % opts["port"])
    if len(socket) > SOCKET_MAX:
        raise ServiceError("the socket path %s is longer than %d bytes: pass a shorter --dir" % (socket, SOCKET_MAX))


def setup(inst, opts):
    """initdb when there is no cluster, the config, then the pgbench role, database and tables
    when the scale is new; returns (state, config changed)."""
    user = server_user()
    bins = binaries()
    version = _version(bins["postgres"])
    old = inst.load() or {}
    state = dict(opts, version=version, **bins)
    _folders(inst, user)
    pg_version, made = inst.file("data/PG_VERSION"), inst.file("initdb.done")
    if not os.path.isfile(made):  # none yet, or an initdb that was killed half-way
        inst.forget()
        old = {}
        shutil.rmtree(inst.file("data"))
        _folders(inst, user)
        run(inst, [bins["initdb"], "-D", inst.file("data"), "--locale=C", "--encoding=UTF8",
                   "--auth-local=peer", "--auth-host=reject"], "initdb")
        with open(made, "w") as f:
            f.write("%s\n" % version)
    with open(pg_version) as f:
        made_by = f.read().strip()  # "15", or "9.6" before 10
    if version != made_by and not version.startswith(made_by + "."):
        raise ServiceError("%s holds a PostgreSQL %s cluster and the server is %s: run teardown first" % (
            inst.file("data"), made_by, version))
    changed = False
    for name, text in config_files(inst, opts).items():
        changed |= _write_if_changed(inst.file(name), text.encode())
    if old.get("filled") and old.get("scale") == opts["scale"] and old.get("postgres") == bins["postgres"]:
        return dict(state, filled=True), changed
    inst.forget()
    _fill(inst, state)
    return dict(state, filled=True), changed


def _write_if_changed(path, data):
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except OSError:
        pass
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
    return True


def _fill(inst, state):
    """The role, the database and pgbench's tables at the scale, on the running server or on one
    started for it (and stopped again)."""
    port = running_port(inst)
    started = port is None
    if started:
        proc, offset = launch(inst, state)
        inst.wait_ready(proc, offset, state["port"], 120.0, ready(inst, state))  # recovery may take long
        port = state["port"]
    try:
        if not psql(inst, state, port, "postgres", "SELECT 1 FROM pg_roles WHERE rolname = '%s'" % ROLE):
            psql(inst, state, port, "postgres", "CREATE ROLE %s LOGIN" % ROLE)
        if not psql(inst, state, port, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'pgbench'"):
            psql(inst, state, port, "postgres", "CREATE DATABASE pgbench OWNER %s" % ROLE)
        steps = "dtGvp" if int(state["version"].split(".")[0]) >= 13 else "dtgvp"  # G: rows made by the server
        run(inst, [state["pgbench"], "-i", "-I", steps, "-s", str(state["scale"]), "-q", "-h", inst.file("run"),
                   "-p", str(port), "-U", ROLE, "pgbench"], "pgbench -i")
        psql(inst, state, port, "postgres", "CHECKPOINT")
    finally:
        if started:
            inst.stop()


def _pidfile(inst):
    """postmaster.pid's lines: pid, data folder, start time, port, socket folder, address, shared
    memory key and id, status (PostgreSQL >= 10)."""
    try:
        with open(inst.file("data/postmaster.pid")) as f:
            return f.read().splitlines()
    except OSError:
        return []


def running_port(inst):
    """The port of the running server, None when none runs."""
    if not inst.processes():
        return None
    lines = _pidfile(inst)
    return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None


def ready(inst, state):
    """The postmaster says it is ready (its pid file's status line), as pg_ctl -w checks: it
    accepts connections while it still recovers, and refuses them with an error."""
    if int(state["version"].split(".")[0]) < 10:
        return None  # no status line before PostgreSQL 10

    def check():
        lines = _pidfile(inst)
        return len(lines) >= 8 and lines[7].strip() == "ready"
    return check


def launch(inst, state):
    user = server_user()
    argv = [state["postgres"], "-D", inst.file("data"), "-c", "config_file=%s" % inst.file("postgresql.conf")]
    return inst.launch(argv, env=_env(user), preexec=_preexec(user))


def reset(inst, state, timeout):
    """The database as pgbench expects it before a measured run: its history empty, the tables
    vacuumed and analyzed, the dirty pages written (so the run does not pay for the last one's)."""
    port = running_port(inst)
    if port is None:
        raise ServiceError("postgres is not running in %s: start it first" % inst.path)
    psql(inst, state, port, "pgbench", "TRUNCATE pgbench_history", "VACUUM ANALYZE", "CHECKPOINT", timeout=timeout)
    return "postgres reset: pgbench_history truncated, vacuumed, analyzed, checkpointed"


def leftovers(inst):
    """What a killed postmaster leaves once none of its processes runs: postmaster.pid (and the
    socket's lock file), which PostgreSQL would take for a running server while its pid is a
    zombie or was reused (it refuses to start then), and the shared memory segment it names, which a start that finds no
    postmaster.pid would never remove (only when nothing is attached to it)."""
    for name in os.listdir(inst.file("run")) if os.path.isdir(inst.file("run")) else []:
        os.unlink(os.path.join(inst.file("run"), name))  # the socket and its lock file, for the same reason
    lines = _pidfile(inst)
    if not lines:
        return
    ipcrm = facts.find_program("ipcrm")
    if len(lines) > 6 and len(lines[6].split()) == 2 and ipcrm is not None:
        shmid = lines[6].split()[1]
        try:
            with open("/proc/sysvipc/shm") as f:
                rows = [row.split() for row in f.read().splitlines()[1:]]
        except OSError:
            rows = []
        if any(len(r) > 6 and r[1] == shmid and r[6] == "0" for r in rows):
            subprocess.run([ipcrm, "-m", shmid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    try:
        os.unlink(inst.file("data/postmaster.pid"))
    except OSError:
        pass


def describe(state):
    user = server_user()
    return ("postgres %s on 127.0.0.1:%d" % (state["version"], state["port"]),
            "scale %d, shared_buffers %s, max_connections %d, fsync %s%s" % (
                state["scale"], state["shared_buffers"], state["max_connections"], state["fsync"],
                ", as postgres" if user else ""))
