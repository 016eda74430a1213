"""What ``hello`` tells the controller about the host, and where programs are found.

Stdlib only, Python >= 3.7.
"""

import glob
import hashlib
import os
import platform
import pwd
import socket
import zipfile

from node_agent import metrics

TOOLS = ("pgbench", "sysbench", "ab", "wrk", "fio", "iperf3", "psql", "redis-benchmark", "nginx", "redis-server",
         "initdb")
EXTRA_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
POSTGRESQL_PORT = 5432


def search_dirs():
    """PATH, then the sbin folders, then PostgreSQL's versioned bin folders (newest first)."""
    dirs = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]
    dirs += EXTRA_DIRS
    pg = glob.glob("/usr/lib/postgresql/*/bin")
    pg.sort(key=lambda d: [int(p) if p.isdigit() else 0 for p in d.split("/")[4].split(".")],
            reverse=True)
    seen, out = set(), []
    for d in dirs + pg:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


_found: dict = {}  # bare name -> where it was found: the benchmark runs at every evaluation


def find_program(name):
    """Absolute path of an executable ``name`` (a bare name is looked up in search_dirs()).

    A bare name is searched once per agent and then only checked to be still there: the search
    stats every folder and lists PostgreSQL's, which cost more than starting the benchmark."""
    if "/" in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    path = _found.get(name)
    if path is not None and os.access(path, os.X_OK):
        return path
    for d in search_dirs():
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            _found[name] = path
            return path
    _found.pop(name, None)
    return None


def payload_path():
    """The zipapp this agent runs from, else the node_agent package folder."""
    package = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(package):
        return package
    archive = os.path.dirname(package)
    return archive if os.path.isfile(archive) else package


def payload_hash():
    """sha256 of the zipapp file (the controller names uploads after it); run from a source
    folder, ``src-`` and a sha256 over its *.py files in name order."""
    path = payload_path()
    digest = hashlib.sha256()
    if os.path.isfile(path) and zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                digest.update(block)
        return digest.hexdigest()
    for name in sorted(n for n in os.listdir(path) if n.endswith(".py")):
        with open(os.path.join(path, name), "rb") as f:
            digest.update(name.encode("utf-8") + b"\0" + f.read() + b"\0")
    return "src-" + digest.hexdigest()


def invoker():
    """The password entry of the user who started this agent through sudo, else None.

    sudo sets SUDO_UID itself and its env_reset keeps the caller from setting it. Such an agent
    writes sysctls as root but runs commands (benchmarks) as that user: the sudo rule grants
    running the agent, not running the user's programs as root.
    """
    uid = os.environ.get("SUDO_UID", "")
    if os.geteuid() != 0 or not uid.isdigit() or int(uid) == 0:
        return None
    try:
        return pwd.getpwuid(int(uid))
    except KeyError:
        return None


def become(entry):
    """In a child before exec: drop every root id for the user ``entry``, for good."""
    os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def distro():
    """``{id, name, version}`` from /etc/os-release (null fields when absent)."""
    fields = {}
    for line in _read("/etc/os-release", _read("/usr/lib/os-release")).splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"').strip("'")
    return {"id": fields.get("ID"), "name": fields.get("NAME"),
            "version": fields.get("VERSION_ID")}


def user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def listening(port):
    """Something listens on TCP ``port`` in this network namespace (IPv4 or IPv6)."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        if port in metrics.parse_listen_ports(_read(name)):
            return True
    return False


def host_facts():
    """Everything in ``hello`` that describes the host rather than the agent's state."""
    mem = metrics.parse_meminfo(_read("/proc/meminfo"))
    return {
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
        "distro": distro(),
        "python": platform.python_version(),
        "cpus": os.cpu_count() or 1,
        "mem_total_kb": mem.get("MemTotal", 0),
        "user": user(),
        "command_user": (invoker() or pwd.getpwuid(os.geteuid())).pw_name,
        "tools": dict((tool, find_program(tool)) for tool in TOOLS),
        "services": {"postgresql": listening(POSTGRESQL_PORT)},
        "netns_init": init_netns(),
    }


def init_netns():
    """Whether the agent runs in the machine's first network namespace (a VM, a bare host) rather
    than in one made later (a container, a host of the local fleet): a later one may only pick a
    default congestion control the first allows (net.ipv4.tcp_allowed_congestion_control). None
    when it cannot be told (the namespaces of pid 1 are not readable)."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return None
