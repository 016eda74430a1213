"""tunefleet-service: real nginx, Redis and PostgreSQL instances, driven by a real agent's ``run``
requests the way the controller drives them, each inside a throwaway host of its own (a network
namespace and a hostname, as a host of the local fleet has), so its ports, its
net.core.somaxconn and its default folder (/var/tmp/tunefleet-services-<hostname>-<user>) are
that host's alone. Real clients (wrk, redis-benchmark, pgbench) measure them; `ss` in the
namespace is the oracle for a listener's accept queue limit.
"""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.unit.test_agent_process import PYTHON, SOMAXCONN, Agent, Netns, payload  # noqa: F401 (fixture)

SERVICE = "tunefleet-service"
PORTS = {"nginx": 18080, "redis": 16379, "postgres": 15432}
SERVERS = {"nginx": "nginx", "redis": "redis-server", "postgres": "postgres"}
CLIENTS = {
    "nginx": (["wrk", "-t1", "-c8", "-d1s", "http://127.0.0.1:18080/"], "Requests/sec:"),
    "redis": (["redis-benchmark", "-p", "16379", "-n", "2000", "-c", "8", "-q", "-t", "ping,set,get"],
              "requests per second"),
    "postgres": (["pgbench", "-h", "127.0.0.1", "-p", "15432", "-U", "pgbench", "-c", "4", "-j", "2", "-T", "2",
                  "pgbench"], "tps = "),
}
SETUP_TIMEOUT = 180

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nsenter"),
                                reason="needs root and nsenter (network namespaces)")


def _need(*programs):
    from node_agent import facts
    missing = [p for p in programs if facts.find_program(p) is None]
    if missing:
        pytest.fail("not installed: %s (make setup installs them)" % ", ".join(missing))


class Host(Netns):
    """A network namespace with a hostname of its own, like a host of the local fleet."""

    def __init__(self):
        self.name = "tfsvc-%s" % uuid.uuid4().hex[:8]
        self.holder = subprocess.Popen(
            ["unshare", "-n", "-u", "sh", "-c",
             "ip link set lo up && hostname %s && echo ready && exec sleep 600" % self.name],
            stdout=subprocess.PIPE)
        assert self.holder.stdout.readline() == b"ready\n"

    def wrap(self, argv):
        ns = "/proc/%d/ns/" % self.holder.pid
        return ["nsenter", "--net=" + ns + "net", "--uts=" + ns + "uts"] + [str(a) for a in argv]

    def folder(self, user="root"):
        return Path("/var/tmp/tunefleet-services-%s-%s" % (self.name, user))

    def backlog(self, port):
        """The accept queue limit of the listener on ``port`` (Send-Q of a listening socket)."""
        out = subprocess.run(self.wrap(["ss", "-ltnH", "sport = :%d" % port]), stdout=subprocess.PIPE,
                             check=True, timeout=10).stdout.decode().split()
        return int(out[2]) if out else None


def _processes_under(path):
    """Pids of every process whose working folder is inside ``path`` (what a server leaves)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            continue
        if cwd == str(path) or cwd.startswith(str(path) + "/"):
            found.append(int(pid))
    return found


@pytest.fixture()
def hosts(payload, tmp_path):
    """make() -> (Host, Agent as root, or as the user named ``user`` through SUDO_UID). Whatever a
    test leaves (servers, folders) is removed at the end, and the end checks nothing was left."""
    made = []
    readable = Path(tempfile.mkdtemp(prefix="tfsvc-payload-", dir="/var/tmp"))  # pytest's tmp is root's alone

    def make(user=None):
        host = Host()
        argv = [PYTHON, "-I", str(payload)]
        if user:  # as an agent started through sudo: commands run as the user, from a payload it can read
            readable.chmod(0o755)
            shutil.copy(str(payload), str(readable / "agent.pyz"))
            argv = ["env", "SUDO_UID=%d" % pwd.getpwnam(user).pw_uid, PYTHON, "-I", str(readable / "agent.pyz")]
        agent = Agent(host, tmp_path / ("state-%d" % len(made)), payload, argv=argv)
        made.append((host, agent))
        return host, agent

    yield make
    for host, agent in made:
        agent.stop()
        for user in ("root", "nobody"):
            folder = host.folder(user)
            for kind in PORTS if folder.exists() else ():  # what a failed test left, the shared memory included
                subprocess.run(host.wrap([PYTHON, "-I", str(payload), "service", kind, "teardown", "--dir", folder]),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
            for pid in _processes_under(folder):
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(str(folder), ignore_errors=True)
        host.close()
    shutil.rmtree(str(readable), ignore_errors=True)


def service(agent, kind, action, *args, **kw):
    """Run the helper as the controller does (a ``run`` request); its reply, which must be a
    success unless ``ok=False``."""
    result = agent.call("run", {"cmd": [SERVICE, kind, action] + [str(a) for a in args],
                                "timeout": kw.get("timeout", SETUP_TIMEOUT)}, timeout=SETUP_TIMEOUT + 10)
    if kw.get("ok", True):
        assert result["exit_code"] == 0, result["stderr_tail"]
        assert len(result["stdout_tail"].strip().splitlines()) == 1, result["stdout_tail"]
    return result


def client(agent, kind, before=None, somaxconn=None):
    """The workload's real client as a benchmark, optionally after steps and with a knob applied."""
    argv, marker = CLIENTS[kind]
    args = {"cmd": argv, "timeout": 60}
    if before:
        args["before"] = [{"what": action, "cmd": [SERVICE, kind, action], "timeout": 60} for action in before]
    if somaxconn:
        args["apply"] = {"values": {SOMAXCONN: somaxconn}}
    result = agent.call("run", args, timeout=90)
    assert "before_failed" not in result, result
    assert result["exit_code"] == 0 and marker in result["stdout_tail"], result
    return result


def _segments_made_by(pid):
    """SysV shared memory segments that process ``pid`` created (a postmaster makes one)."""
    with open("/proc/sysvipc/shm") as f:
        rows = [row.split() for row in f.read().splitlines()[1:]]
    return [r[1] for r in rows if r[4] == str(pid)]


def _snapshot(folder):
    return dict((str(p), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


def _pipe_inodes(pid):
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.add(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return set(t for t in out if t.startswith("pipe:"))


@pytest.mark.parametrize("kind", ["nginx", "redis", "postgres"])
def test_a_server_set_up_started_measured_restarted_stopped_and_torn_down_through_the_agent(hosts, kind):
    _need(SERVERS[kind], CLIENTS[kind][0][0], "ss")
    host, agent = hosts()
    folder = host.folder() / kind
    port = PORTS[kind]
    assert "set up" in service(agent, kind, "setup")["stdout_tail"]
    files = _snapshot(folder)
    again = service(agent, kind, "setup")["stdout_tail"]
    assert " unchanged: " in again and _snapshot(folder) == files  # a second setup changes nothing

    asked = time.monotonic()
    started = service(agent, kind, "start", timeout=60)
    waited = time.monotonic() - asked
    line = started["stdout_tail"]
    assert line.startswith("%s " % kind) and "127.0.0.1:%d, pid " % port in line and str(folder) in line
    master = int((folder / "server.pid").read_text())
    assert "pid %d," % master in line
    # The server holds none of the agent's pipes (nor the helper's: the step would wait for their
    # EOF, a second, DRAIN_GRACE_S), stdin is /dev/null and its output goes to its log.
    assert waited - started["duration_s"] < 0.8, (waited, started["duration_s"])
    agent_pipes = _pipe_inodes(agent.proc.pid)
    for pid in _processes_under(folder):
        fds = "/proc/%d/fd/" % pid
        assert os.readlink(fds + "0") == "/dev/null"
        assert os.readlink(fds + "1") == os.readlink(fds + "2") == str(folder / "server.log")
        assert not _pipe_inodes(pid) & agent_pipes
    if kind == "postgres":  # PostgreSQL refuses root: a root run drops to postgres for all of it
        postgres = pwd.getpwnam("postgres")
        assert all(os.stat("/proc/%d" % p).st_uid == postgres.pw_uid for p in _processes_under(folder))
        assert (folder / "data").stat().st_uid == postgres.pw_uid
    else:
        assert os.stat("/proc/%d" % master).st_uid == 0
    if kind == "nginx":  # ... and nginx's workers do not run as root
        workers = [p for p in _processes_under(folder) if p != master]
        assert workers and all(os.stat("/proc/%d" % p).st_uid == pwd.getpwnam("nobody").pw_uid for p in workers)
        served = agent.call("run", {"cmd": [PYTHON, "-c", "import urllib.request as u; r = u.urlopen("
                                             "'http://127.0.0.1:18080/'); print(r.status, len(r.read()))"],
                                    "timeout": 20})
        assert served["stdout_tail"].split() == ["200", "4096"]
    refused = service(agent, kind, "start", ok=False)
    assert refused["exit_code"] == 1 and "already runs" in refused["stderr_tail"]

    # net.core.somaxconn caps the backlog at listen(): a new value shows only after a restart.
    # (PostgreSQL asks for 2 x its backends, 244 at max_connections 100; nginx and Redis 65535.)
    first = host.backlog(port)
    low, lower = (100, 60) if kind == "postgres" else (1000, 700)
    assert first > low and (kind == "postgres" or first == int(host.sysctl(SOMAXCONN)))
    client(agent, kind, somaxconn=low)
    assert host.backlog(port) == first
    measured = client(agent, kind, before=["restart"], somaxconn=lower)
    assert [s["what"] for s in measured["before"]] == ["restart"]
    assert host.backlog(port) == lower and int((folder / "server.pid").read_text()) != master
    if kind == "postgres":
        count = [PYTHON, "-c", "import subprocess as s; print(s.run(['psql', '-h', '127.0.0.1', '-p', '15432', "
                 "'-U', 'pgbench', '-XAtc', 'SELECT count(*) FROM pgbench_history', 'pgbench'], "
                 "stdout=s.PIPE, check=True).stdout.decode())"]
        assert int(agent.call("run", {"cmd": count, "timeout": 20})["stdout_tail"]) > 0
        assert "truncated" in service(agent, kind, "reset")["stdout_tail"]
        assert int(agent.call("run", {"cmd": count, "timeout": 20})["stdout_tail"]) == 0
        client(agent, kind, before=["restart", "reset"])
    if kind == "redis":
        keys = ["redis-cli", "-p", "16379", "DBSIZE"]
        assert int(agent.call("run", {"cmd": keys, "timeout": 20})["stdout_tail"]) > 0
        service(agent, kind, "reset")
        assert int(agent.call("run", {"cmd": keys, "timeout": 20})["stdout_tail"]) == 0

    assert "stopped" in service(agent, kind, "stop")["stdout_tail"]
    assert host.backlog(port) is None and not _processes_under(folder) and not (folder / "server.pid").exists()
    assert "was not running" in service(agent, kind, "stop")["stdout_tail"]
    assert "removed" in service(agent, kind, "teardown")["stdout_tail"]
    assert not folder.exists() and not host.folder().exists()
    assert "nothing to remove" in service(agent, kind, "teardown")["stdout_tail"]
    assert "was not running" in service(agent, kind, "stop")["stdout_tail"]  # also with the folder gone


@pytest.mark.parametrize("kind", ["nginx", "redis", "postgres"])
def test_stop_after_the_server_was_killed_and_with_a_stale_pid_file(hosts, kind):
    """An exit step runs again after a crash: stop must finish what a SIGKILL left (nginx's workers
    keep serving without their master) and never signal a pid that is not the server's."""
    _need(SERVERS[kind])
    host, agent = hosts()
    folder = host.folder() / kind
    service(agent, kind, "setup")
    service(agent, kind, "start", timeout=60)
    master = int((folder / "server.pid").read_text())
    os.kill(master, signal.SIGKILL)
    line = service(agent, kind, "stop")["stdout_tail"]
    assert "stopped" in line or "was not running" in line
    assert not _processes_under(folder) and host.backlog(PORTS[kind]) is None
    assert not _segments_made_by(master)  # PostgreSQL's shared memory went with it
    service(agent, kind, "start", timeout=60)  # PostgreSQL recovers from the crash
    service(agent, kind, "stop")
    bystander = subprocess.Popen(host.wrap(["sleep", "60"]), cwd=str(folder))
    try:
        time.sleep(0.2)  # nsenter has exec'd sleep
        (folder / "server.pid").write_text("%d\n" % bystander.pid)
        assert "was not running" in service(agent, kind, "stop")["stdout_tail"]
        assert bystander.poll() is None  # a process in the folder that is not the server survives
        (folder / "server.pid").write_text("999999999\n")
        assert "was not running" in service(agent, kind, "stop")["stdout_tail"]
    finally:
        bystander.kill()
        bystander.wait(10)
    service(agent, kind, "teardown")
    assert not _processes_under(folder) and not folder.exists()


def test_two_hosts_default_folders_do_not_collide(hosts):
    """Hosts of the local fleet share /var/tmp: the default folder names the host, so each host
    has its own instance, and one host's teardown leaves the other's running."""
    _need("nginx", "redis-server")
    (one, first), (two, second) = hosts(), hosts()
    for agent in (first, second):
        for kind in ("nginx", "redis"):
            service(agent, kind, "setup")
            service(agent, kind, "start")
    assert one.folder() != two.folder()
    assert _processes_under(one.folder()) and _processes_under(two.folder())
    for kind in ("nginx", "redis"):
        service(first, kind, "teardown")
    assert not one.folder().exists() and not _processes_under(one.folder())
    assert two.backlog(18080) and two.backlog(16379)
    client(second, "redis")
    for kind in ("nginx", "redis"):
        assert "stopped" in service(second, kind, "teardown")["stdout_tail"]


def test_a_tuning_user_runs_its_own_servers_as_itself(hosts):
    """An agent started through sudo runs commands as the user who asked: that user's servers
    (PostgreSQL included, which then needs no postgres account) in that user's own folder."""
    _need("nginx", "postgres")
    host, agent = hosts(user="nobody")
    nobody = pwd.getpwnam("nobody").pw_uid
    for kind in ("nginx", "postgres"):
        service(agent, kind, "setup")
        service(agent, kind, "start", timeout=60)
        folder = host.folder("nobody") / kind
        pids = _processes_under(folder)
        assert pids and all(os.stat("/proc/%d" % p).st_uid == nobody for p in pids)
        assert folder.stat().st_uid == nobody
    client(agent, "postgres", before=["reset"])
    for kind in ("nginx", "postgres"):
        service(agent, kind, "teardown")
    assert not host.folder("nobody").exists()


def _helper(host, *args, **kw):
    """The helper run directly in ``host`` (not through an agent), for its errors."""
    argv = kw.get("prefix", []) + [PYTHON, "-I", str(kw["payload"]), "service"] + list(args)
    return subprocess.run(host.wrap(argv), capture_output=True, timeout=120,
                          text=True)


def _one_line_error(p, text):
    assert p.returncode != 0 and p.stdout == "", p
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and text in lines[0], p.stderr
    return lines[0]


def test_errors_are_one_line(hosts, payload, tmp_path):
    _need("redis-server")
    host, agent = hosts()
    _one_line_error(_helper(host, "redis", "start", payload=payload), "not set up")
    _one_line_error(_helper(host, "redis", "frobnicate", payload=payload), "invalid choice")
    _one_line_error(_helper(host, "redis", "setup", "--io-threads", "0", payload=payload), "--io-threads")
    _one_line_error(_helper(host, "postgres", "setup", "--scale", "x", payload=payload), "--scale")
    for action in ("setup", "start", "stop", "restart", "reset", "teardown"):
        shown = _helper(host, "redis", action, "--help", payload=payload)
        assert shown.returncode == 0 and "--dir" in shown.stdout
    # A server that does not come up: the log's last line says why.
    service(agent, "redis", "setup")
    conf = host.folder() / "redis" / "redis.conf"
    conf.write_text(conf.read_text() + "no-such-directive yes\n")
    line = _one_line_error(_helper(host, "redis", "start", payload=payload), "exited with 1 at start")
    assert "no-such-directive" in line
    assert not _processes_under(host.folder() / "redis")
    # A port that another program holds (the host's own server, say) is never taken over.
    conf.write_text(conf.read_text().replace("no-such-directive yes\n", ""))
    squatter = subprocess.Popen(host.wrap([PYTHON, "-c", (
        "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',16379)); s.listen(8); "
        "print('up', flush=True); time.sleep(60)")]), stdout=subprocess.PIPE)
    try:
        assert squatter.stdout.readline() == b"up\n"
        _one_line_error(_helper(host, "redis", "start", payload=payload), "in use by another program")
    finally:
        squatter.kill()
        squatter.wait(10)
        squatter.stdout.close()
    service(agent, "redis", "teardown")


def test_a_folder_the_helper_did_not_make_is_never_used_or_removed(hosts, payload, tmp_path):
    """A --dir whose KIND subfolder exists (/etc with its nginx/, say) is someone else's."""
    _need("redis-server")
    host, _agent = hosts()
    theirs = tmp_path / "etc" / "redis"
    theirs.mkdir(parents=True)
    (theirs / "redis.conf").write_text("theirs\n")
    for action in ("setup", "teardown"):
        _one_line_error(_helper(host, "redis", action, "--dir", str(tmp_path / "etc"), payload=payload),
                        "did not make")
    assert (theirs / "redis.conf").read_text() == "theirs\n" and os.listdir(str(theirs)) == ["redis.conf"]
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # others may swap a folder in here: refused
    _one_line_error(_helper(host, "redis", "setup", "--dir", str(shared / "x"), payload=payload), "others may write")


def test_postgres_as_root_without_a_postgres_user_is_refused_in_one_line(hosts, payload, tmp_path):
    """PostgreSQL refuses root; a root helper on a host without a postgres account says so (here a
    private mount namespace shows a password file without that user)."""
    _need("postgres")
    host, _agent = hosts()
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(ln for ln in open("/etc/passwd") if not ln.startswith("postgres:")))
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/passwd && exec "$@"', str(passwd)]
    _one_line_error(_helper(host, "postgres", "setup", payload=payload, prefix=prefix), "no user postgres")
    assert not host.folder().exists()


def test_setup_again_with_other_options_redoes_what_differs(hosts):
    """A running server keeps its config until a restart (setup says so); new data (a scale) is
    made at once, on the running server."""
    _need("redis-server", "redis-cli", "postgres", "psql")
    _host, agent = hosts()
    io_threads = ["redis-cli", "-p", "16379", "CONFIG", "GET", "io-threads"]
    service(agent, "redis", "setup")
    service(agent, "redis", "start")
    assert agent.call("run", {"cmd": io_threads, "timeout": 20})["stdout_tail"].split() == ["io-threads", "1"]
    line = service(agent, "redis", "setup", "--io-threads", "2")["stdout_tail"]
    assert "redis updated" in line and "restart to apply" in line
    service(agent, "redis", "restart")
    assert agent.call("run", {"cmd": io_threads, "timeout": 20})["stdout_tail"].split() == ["io-threads", "2"]

    branches = [PYTHON, "-c", "import subprocess as s; print(s.run(['psql', '-h', '127.0.0.1', '-p', '15432', "
                "'-U', 'pgbench', '-XAtc', 'SELECT count(*) FROM pgbench_branches', 'pgbench'], "
                "stdout=s.PIPE, check=True).stdout.decode())"]
    service(agent, "postgres", "setup", "--scale", "2")
    service(agent, "postgres", "start")
    assert int(agent.call("run", {"cmd": branches, "timeout": 20})["stdout_tail"]) == 2
    line = service(agent, "postgres", "setup", "--scale", "3")["stdout_tail"]
    assert "postgres updated" in line and "restart" not in line  # the data changed, not the config
    assert int(agent.call("run", {"cmd": branches, "timeout": 20})["stdout_tail"]) == 3
    for kind in ("redis", "postgres"):
        service(agent, kind, "teardown")


def test_a_teardown_registered_on_exit_runs_when_the_agent_stops_and_after_it_was_killed(hosts, payload, tmp_path):
    """The way a run cleans up: the teardown is an exit step, run at bye, and run by the next
    agent when the one that started the server died (SIGKILL: nothing ran)."""
    _need("redis-server")
    host, agent = hosts()
    folder = host.folder() / "redis"
    teardown = [{"what": "redis teardown", "cmd": [SERVICE, "redis", "teardown"], "timeout": 60}]
    agent.call("on_exit", {"key": "redis", "steps": teardown})
    service(agent, "redis", "setup")
    service(agent, "redis", "start")
    agent.proc.kill()
    agent.proc.wait(10)
    assert _processes_under(folder)  # the server outlives the agent that started it
    state = tmp_path / "state-0"
    second = Agent(host, state, payload)
    try:
        recovered = second.call("hello")["exits_recovered"]
        assert [(r["what"], r["ok"]) for r in recovered] == [("redis teardown", True)], recovered
        assert not folder.exists() and not _processes_under(folder)
        second.call("on_exit", {"key": "redis", "steps": teardown})
        service(second, "redis", "setup")
        service(second, "redis", "start")
        second.call("bye")
        assert second.wait() == 0
        assert not folder.exists() and not _processes_under(folder)
    finally:
        second.stop()
