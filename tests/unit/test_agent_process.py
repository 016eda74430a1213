"""The agent as a real process: raw JSON lines on its stdin/stdout, real /proc/sys writes.

Every agent runs inside a throwaway network namespace (held open by a sleeping process, joined
with nsenter), so the per-namespace knobs it writes (net.core.somaxconn, net.ipv4.*) exist only
there and vanish with it. The agent is started as the controller starts it: the system python3,
isolated mode, from a zipapp built the way the controller builds one.
"""

import hashlib
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from node_agent import journal, sysctl

ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PYTHON37 = Path.home() / ".pyenv/versions/3.7.16/bin/python3.7"
SOMAXCONN, FIN = "net.core.somaxconn", "net.ipv4.tcp_fin_timeout"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nsenter"),
                                reason="needs root and nsenter (network namespaces)")


@pytest.fixture(scope="session")
def payload(tmp_path_factory):
    """agent.pyz: node_agent/*.py plus a top-level __main__.py, as the controller ships it."""
    path = tmp_path_factory.mktemp("payload") / "agent.pyz"
    with zipfile.ZipFile(str(path), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("__main__.py", "from node_agent.__main__ import main\nmain()\n")
        for source in sorted((ROOT / "node_agent").glob("*.py")):
            z.write(str(source), "node_agent/" + source.name)
    return path


class Netns:
    """A network namespace of our own, alive while a `sleep` holds it."""

    def __init__(self):
        self.holder = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", "ip link set lo up && echo ready && exec sleep 300"],
            stdout=subprocess.PIPE)
        assert self.holder.stdout.readline() == b"ready\n"

    def wrap(self, argv):
        return ["nsenter", "--net=/proc/%d/ns/net" % self.holder.pid] + [str(a) for a in argv]

    def sysctl(self, name):
        """The kernel's value, read without the agent."""
        out = subprocess.run(self.wrap(["cat", "/proc/sys/" + name.replace(".", "/")]),
                             stdout=subprocess.PIPE, check=True, timeout=10).stdout
        return " ".join(out.decode().split())

    def close(self):
        self.holder.kill()
        self.holder.wait(10)
        self.holder.stdout.close()


@pytest.fixture()
def netns():
    ns = Netns()
    yield ns
    ns.close()


@pytest.fixture()
def state(tmp_path):
    return tmp_path / "state"


class Agent:
    """One agent process; replies and events are read by a thread so every wait is bounded."""

    def __init__(self, netns, state, payload, *extra, **kw):
        argv = kw.get("argv") or [PYTHON, "-I", payload]
        self.proc = subprocess.Popen(netns.wrap(argv + ["--state", state] + list(extra)),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=kw.get("cwd"))
        self.lines = queue.Queue()
        self.events = []
        self.ids = itertools.count(100)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            for raw in iter(self.proc.stdout.readline, b""):
                self.lines.put(json.loads(raw))
        except (OSError, ValueError):  # a test closed our end of the pipe
            pass
        self.lines.put(None)
        self.proc.stdout.close()

    def send(self, raw):
        self.proc.stdin.write(raw if isinstance(raw, bytes) else raw.encode())
        self.proc.stdin.flush()

    def next_reply(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            message = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            assert message is not None, "agent exited: %s" % self.stderr()
            if "event" in message:
                self.events.append(message)
                continue
            return message

    def request(self, rid, op, args=None, timeout=15.0):
        self.send(json.dumps({"id": rid, "op": op, "args": args or {}}) + "\n")
        message = self.next_reply(timeout)
        assert message["id"] == rid
        return message

    def call(self, op, args=None, timeout=15.0):
        message = self.request(next(self.ids), op, args, timeout)
        assert message["ok"], message
        return message["result"]

    def close_stdin(self):
        self.proc.stdin.close()

    def wait(self, timeout=10.0):
        return self.proc.wait(timeout)

    def stderr(self):
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stderr):
            if not pipe.closed:
                pipe.close()


@pytest.fixture()
def agents(netns, state, payload):
    """Start agents in the test's namespace; whatever is left is killed at the end."""
    started = []

    def start(*extra, **kw):
        agent = Agent(netns, kw.pop("state", state), payload, *extra, **kw)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def other_value(current, *candidates):
    return next(c for c in candidates if c != current)


# -- hello, ping, describe, read, sample -------------------------------------------------------

def test_hello_reports_facts_of_the_host(agents, payload, state):
    agent = agents()
    facts = agent.call("hello", {"knobs": [SOMAXCONN, "net.no.such_knob", "bad name"]})
    assert facts["protocol"] == 1
    assert facts["pid"] == agent.proc.pid
    assert facts["agent_hash"] == hashlib.sha256(payload.read_bytes()).hexdigest()
    assert facts["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert facts["kernel"] == os.uname().release
    assert facts["python"].startswith("3.")
    assert facts["cpus"] >= 1 and facts["mem_total_kb"] > 0
    assert facts["state_dir"] == str(state)
    assert set(facts["tools"]) == {"pgbench", "sysbench", "ab", "wrk", "fio", "iperf3", "psql", "redis-benchmark",
                                   "nginx", "redis-server", "initdb"}
    assert facts["services"] == {"postgresql": False}  # nothing listens in a fresh namespace
    assert facts["recovered"] == {} and facts["kept"] == [] and facts["journaled"] == []
    assert set(facts["distro"]) == {"id", "name", "version"}
    knobs = facts["knobs"]
    assert knobs[SOMAXCONN]["exists"] and knobs[SOMAXCONN]["writable"]
    assert knobs["net.no.such_knob"] == {"exists": False, "value": None, "writable": False}
    assert knobs["bad name"]["exists"] is False and "error" in knobs["bad name"]


def test_hello_sees_a_postgresql_listener(netns, agents):
    listener = subprocess.Popen(netns.wrap([PYTHON, "-c", (
        "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',5432)); s.listen(1); "
        "print('up', flush=True); time.sleep(30)")]), stdout=subprocess.PIPE)
    try:
        assert listener.stdout.readline() == b"up\n"
        assert agents().call("hello")["services"] == {"postgresql": True}
    finally:
        listener.kill()
        listener.wait(10)
        listener.stdout.close()


def test_ping_describe_read_and_sample(netns, agents):
    agent = agents()
    assert abs(agent.call("ping")["time"] - time.time()) < 5
    described = agent.call("describe", {"names": [SOMAXCONN, "net.core.rmem_max"]})
    assert described[SOMAXCONN]["value"] == netns.sysctl(SOMAXCONN)
    assert described["net.core.rmem_max"]["writable"] is False  # read-only inside a namespace
    read = agent.call("read", {"names": ["net.ipv4.tcp_rmem", "net.no.such_knob"]})
    assert read["values"] == {"net.ipv4.tcp_rmem": netns.sysctl("net.ipv4.tcp_rmem")}
    assert read["missing"] == ["net.no.such_knob"]
    assert "\t" not in read["values"]["net.ipv4.tcp_rmem"]
    sample = agent.call("sample")
    assert sample["time"] > 0 and "mem_available_mb" in sample["metrics"]


# -- apply and restore -------------------------------------------------------------------------

def test_apply_reads_back_and_bye_restores(netns, agents, state):
    agent = agents()
    original = {SOMAXCONN: netns.sysctl(SOMAXCONN), FIN: netns.sysctl(FIN)}
    target = other_value(original[SOMAXCONN], "1234", "1235")
    result = agent.call("apply", {"values": {SOMAXCONN: int(target), FIN: [17]}})
    assert result == {"applied": {SOMAXCONN: target, FIN: "17"}, "refused": {}}
    assert netns.sysctl(SOMAXCONN) == target and netns.sysctl(FIN) == "17"
    document = json.loads((state / journal.JOURNAL).read_text())
    assert dict(document["entries"]) == original
    assert document["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    bye = agent.call("bye")
    assert bye == {"restored": original, "unchanged": {}, "errors": {}, "foreign": {}, "left": []}
    assert agent.wait() == 0
    assert netns.sysctl(SOMAXCONN) == original[SOMAXCONN] and netns.sysctl(FIN) == original[FIN]
    assert not (state / journal.JOURNAL).exists()


def test_vectors_are_normalized_and_bounded_per_component(netns, agents):
    agent = agents()
    rmem = "net.ipv4.tcp_rmem"
    bounds = {rmem: {"min": [4096, 8192, 65536], "max": [4096, 1 << 20, 1 << 24]}}
    result = agent.call("apply", {"values": {rmem: [4096, 65536, 1048576]}, "bounds": bounds})
    assert result["applied"] == {rmem: "4096 65536 1048576"}
    assert netns.sysctl(rmem) == "4096 65536 1048576"
    result = agent.call("apply", {"values": {rmem: "4096 4096 1048576"}, "bounds": bounds})
    assert result["applied"] == {}
    assert "component 2" in result["refused"][rmem]["message"]
    assert netns.sysctl(rmem) == "4096 65536 1048576"


def test_the_kernels_refusal_is_reported_with_its_errno(netns, agents):
    agent = agents()
    before = netns.sysctl("net.ipv4.tcp_rmem")
    result = agent.call("apply", {"values": {"net.ipv4.tcp_rmem": "0 0 0",
                                             "net.ipv4.tcp_congestion_control": "nosuchalgo",
                                             FIN: 21}})
    rmem = result["refused"]["net.ipv4.tcp_rmem"]
    assert rmem["type"] == "OSError" and rmem["errno"] == 22, rmem
    assert "EINVAL" in rmem["message"]
    assert result["refused"]["net.ipv4.tcp_congestion_control"]["errno"] == 2  # ENOENT
    assert result["applied"] == {FIN: "21"}  # one refusal does not stop the others
    assert netns.sysctl("net.ipv4.tcp_rmem") == before


def test_out_of_bounds_is_refused_before_anything_is_written(netns, agents, state):
    agent = agents()
    before = netns.sysctl(SOMAXCONN)
    result = agent.call("apply", {
        "values": {SOMAXCONN: 70000, "net.ipv4.tcp_congestion_control": "reno",
                   "net.ipv4.tcp_wmem": "4096", FIN: "12abc"},
        "bounds": {SOMAXCONN: {"min": 16, "max": 65535},
                   "net.ipv4.tcp_congestion_control": {"choices": ["cubic", "bbr"]},
                   FIN: {"min": 1, "max": 60}}})
    assert result["applied"] == {}
    assert set(result["refused"]) == {SOMAXCONN, "net.ipv4.tcp_congestion_control",
                                      "net.ipv4.tcp_wmem", FIN}
    for refusal in result["refused"].values():
        assert refusal["type"] == "ValidationError" and refusal["errno"] is None
    assert "above the max 65535" in result["refused"][SOMAXCONN]["message"]
    assert "needs 3 components" in result["refused"]["net.ipv4.tcp_wmem"]["message"]
    assert netns.sysctl(SOMAXCONN) == before
    assert not (state / journal.JOURNAL).exists()  # nothing was about to change


def test_a_scalar_given_several_numbers_is_refused_before_the_kernel_sees_it(netns, agents):
    """The kernel writes the first number and then answers EINVAL: a refusal that changed the
    knob. The agent refuses the shape instead, and nothing changes."""
    agent = agents()
    before = netns.sysctl(FIN)
    result = agent.call("apply", {"values": {FIN: "4096 87380 6291456"}})
    assert result["applied"] == {} and result["refused"][FIN]["type"] == "ValidationError"
    assert "needs 1 number" in result["refused"][FIN]["message"]
    assert netns.sysctl(FIN) == before


def test_bad_names_are_refused(agents):
    agent = agents()
    result = agent.call("apply", {"values": {"../../etc/passwd": 1, "net.core.somaxconn; rm -rf /": 1,
                                             "net.no.such_knob": 1, "net.core.somaxconn\n": 1}})
    assert result["applied"] == {}
    assert len(result["refused"]) == 4
    assert all(r["type"] == "ValidationError" for r in result["refused"].values())
    reply = agent.request(5, "read", {"names": ["kernel/../../etc/shadow"]})
    assert reply["ok"] is False and reply["error"]["type"] == "ValidationError"


def test_the_journal_is_on_disk_before_the_first_write(netns, agents, state):
    agent = agents()
    agent.call("ping")
    before = netns.sysctl(SOMAXCONN)
    shutil.rmtree(str(state))
    state.write_text("the journal cannot be written here")
    reply = agent.request(9, "apply", {"values": {SOMAXCONN: other_value(before, "999", "998")}})
    assert reply["ok"] is False and reply["error"]["type"] == "OSError"
    assert reply["error"]["errno"] == 20  # ENOTDIR: no journal, so no write
    assert netns.sysctl(SOMAXCONN) == before


def test_the_first_original_is_kept_across_applies_and_restore_takes_names(netns, agents):
    agent = agents()
    original = {SOMAXCONN: netns.sysctl(SOMAXCONN), FIN: netns.sysctl(FIN)}
    agent.call("apply", {"values": {SOMAXCONN: 500, FIN: 30}})
    agent.call("apply", {"values": {SOMAXCONN: 600}})
    assert agent.call("hello")["journaled"] == [SOMAXCONN, FIN]
    assert agent.call("restore", {"names": [SOMAXCONN]}) == {
        "restored": {SOMAXCONN: original[SOMAXCONN]}, "unchanged": {}, "errors": {}, "foreign": {}, "left": [FIN]}
    assert netns.sysctl(SOMAXCONN) == original[SOMAXCONN] and netns.sysctl(FIN) == "30"
    assert agent.call("restore")["restored"] == {FIN: original[FIN]}
    assert netns.sysctl(FIN) == original[FIN]


def test_restore_goes_in_reverse_order_of_first_change(tmp_path):
    log = []
    book = journal.Journal(str(tmp_path), "boot")
    book.record([("a.b", "1"), ("c.d", "2")])
    book.record([("e.f", "3"), ("a.b", "9")])
    assert book.restore(lambda name, value: log.append((name, value))) == {
        "restored": {"a.b": "1", "c.d": "2", "e.f": "3"}, "unchanged": {}, "errors": {}, "foreign": {}}
    assert log == [("e.f", "3"), ("c.d", "2"), ("a.b", "1")]
    assert not (tmp_path / journal.JOURNAL).exists()


def test_a_coupled_pair_is_restored_through_the_knob_that_was_in_force(tmp_path):
    # vm.dirty_bytes and vm.dirty_ratio zero each other; writing 0 back is EINVAL. Checked with
    # a recording writer: tests never write kernel-wide knobs.
    log = []
    book = journal.Journal(str(tmp_path), "boot", coupled=sysctl.COUPLED)
    book.record([("vm.dirty_ratio", "20"), ("vm.dirty_bytes", "0"), ("vm.dirty_background_bytes", "0")])
    book.record([("vm.dirty_background_ratio", "10")])
    report = book.restore(lambda name, value: log.append((name, value)),
                          names=["vm.dirty_bytes", "vm.dirty_background_bytes"])
    assert log == [("vm.dirty_background_ratio", "10"), ("vm.dirty_ratio", "20")]
    assert report["restored"] == {"vm.dirty_ratio": "20", "vm.dirty_bytes": "0",
                                  "vm.dirty_background_bytes": "0", "vm.dirty_background_ratio": "10"}
    assert report["errors"] == {} and book.entries == []


# -- when the agent restores -------------------------------------------------------------------

def test_closing_stdin_restores(netns, agents):
    agent = agents()
    original = netns.sysctl(SOMAXCONN)
    agent.call("apply", {"values": {SOMAXCONN: other_value(original, "333", "334")}})
    agent.close_stdin()
    assert agent.wait() == 0
    assert netns.sysctl(SOMAXCONN) == original


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_restores(netns, agents, sig):
    agent = agents()
    original = netns.sysctl(FIN)
    agent.call("apply", {"values": {FIN: other_value(original, "13", "14")}})
    agent.proc.send_signal(sig)
    assert agent.wait() == 0
    assert netns.sysctl(FIN) == original
    assert sig.name in agent.stderr()


def test_the_idle_timeout_restores(netns, agents):
    agent = agents("--idle-timeout", "0.5")
    original = netns.sysctl(SOMAXCONN)
    agent.call("apply", {"values": {SOMAXCONN: other_value(original, "444", "445")}})
    assert netns.sysctl(SOMAXCONN) != original
    assert agent.wait(10) == 0  # stdin still open: only the idle timeout can end it
    assert netns.sysctl(SOMAXCONN) == original
    assert "idle" in agent.stderr()


def test_no_heartbeat_restores_even_during_a_run(netns, agents):
    agent = agents("--heartbeat-timeout", "1")
    original = netns.sysctl(SOMAXCONN)
    agent.call("apply", {"values": {SOMAXCONN: other_value(original, "446", "447")}})
    agent.send(b'{"event":"heartbeat"}\n')  # no reply: the next one is the ping's
    assert agent.request(3, "ping")["ok"] is True
    agent.send(json.dumps({"id": 4, "op": "run", "args": {"cmd": "sleep 30", "timeout": 60}}) + "\n")
    beating_until = time.monotonic() + 2.5  # heartbeats keep a long benchmark going
    while time.monotonic() < beating_until:
        agent.send(b'{"event":"heartbeat"}\n')
        time.sleep(0.3)
    assert agent.proc.poll() is None and netns.sysctl(SOMAXCONN) != original
    silent_from = time.monotonic()  # stdin stays open, nothing more is sent: a silent partition
    assert agent.wait(10) == 0
    assert time.monotonic() - silent_from < 3
    assert netns.sysctl(SOMAXCONN) == original
    assert "no heartbeat for 1 s" in agent.stderr()


def test_bye_keep_leaves_values_until_restore_kept(netns, agents, state):
    original = netns.sysctl(SOMAXCONN)
    target = other_value(original, "555", "556")
    first = agents()
    first.call("apply", {"values": {SOMAXCONN: target}})
    assert first.call("bye", {"keep": True}) == {"restored": {}, "unchanged": {}, "errors": {}, "foreign": {},
                                                 "kept": [SOMAXCONN], "left": [SOMAXCONN]}
    assert first.wait() == 0
    assert netns.sysctl(SOMAXCONN) == target
    assert (state / journal.KEPT).exists() and not (state / journal.JOURNAL).exists()
    second = agents()
    facts = second.call("hello")
    assert facts["recovered"] == {} and facts["kept"] == [SOMAXCONN]
    assert netns.sysctl(SOMAXCONN) == target  # a plain restore does not touch kept values
    assert second.call("restore")["restored"] == {}
    assert second.call("restore", {"kept": True}) == {"restored": {SOMAXCONN: original}, "unchanged": {},
                                                      "errors": {}, "foreign": {}, "earlier": {}, "left": []}
    assert netns.sysctl(SOMAXCONN) == original
    assert not (state / journal.KEPT).exists()


def test_a_stale_journal_is_restored_at_the_next_start(netns, agents):
    original = netns.sysctl(SOMAXCONN)
    target = other_value(original, "666", "667")
    crashed = agents()
    crashed.call("apply", {"values": {SOMAXCONN: target}})
    crashed.proc.send_signal(signal.SIGKILL)
    crashed.wait()
    assert netns.sysctl(SOMAXCONN) == target  # nobody restored it
    again = agents()
    assert again.call("hello")["recovered"] == {SOMAXCONN: original}
    assert netns.sysctl(SOMAXCONN) == original


def test_a_journal_from_an_earlier_boot_is_discarded(netns, agents, state):
    state.mkdir()
    (state / journal.JOURNAL).write_text(json.dumps(
        {"format": 1, "boot_id": "an-earlier-boot", "entries": [[SOMAXCONN, "77"]]}))
    before = netns.sysctl(SOMAXCONN)
    agent = agents()
    assert agent.call("hello")["recovered"] == {}
    assert netns.sysctl(SOMAXCONN) == before
    assert not (state / journal.JOURNAL).exists()
    agent.close_stdin()
    agent.wait()
    assert "earlier boot" in agent.stderr()


def test_a_second_agent_on_the_same_state_is_refused(netns, agents, state):
    first = agents()
    original = netns.sysctl(SOMAXCONN)
    first.call("apply", {"values": {SOMAXCONN: other_value(original, "777", "778")}})
    journal_before = (state / journal.JOURNAL).read_text()
    second = agents()
    for rid, op in ((1, "hello"), (2, "ping"), (3, "restore"), (4, "bye")):
        reply = second.request(rid, op)
        assert reply["ok"] is False and reply["error"]["type"] == "OSError"
        assert "pid %d" % first.proc.pid in reply["error"]["message"]
    assert second.wait() == 0
    assert (state / journal.JOURNAL).read_text() == journal_before
    assert netns.sysctl(SOMAXCONN) != original  # the second agent restored nothing
    assert first.call("bye")["restored"] == {SOMAXCONN: original}


# -- run ---------------------------------------------------------------------------------------

def test_run_streams_samples_and_summarizes(agents):
    agent = agents()
    reply = agent.request(11, "run", {
        "cmd": "sh -c 'echo to-stdout; echo to-stderr >&2; sleep 0.6; exit 3'",
        "timeout": 10, "interval": 0.1})
    result = reply["result"]
    assert result["exit_code"] == 3 and result["timed_out"] is False
    assert 0.5 < result["duration_s"] < 5
    assert result["stdout_tail"] == "to-stdout\n" and result["stderr_tail"] == "to-stderr\n"
    assert result["samples"] == len(agent.events) >= 3
    assert all(e["event"] == "sample" and e["id"] == 11 for e in agent.events)
    assert all("t" in e["data"] and "load1" in e["data"]["metrics"] for e in agent.events)
    assert "cpu_util" in result["metrics"] and "tcp_listen_overflows" in result["metrics"]


def test_run_applies_the_values_it_carries_before_the_command_starts(netns, agents, state):
    """One round trip per evaluation: the command sees the applied value, the reply says what was applied."""
    agent = agents()
    original = netns.sysctl(FIN)
    target = other_value(original, "17", "18")
    result = agent.call("run", {"cmd": ["cat", "/proc/sys/net/ipv4/tcp_fin_timeout"], "timeout": 5,
                                "apply": {"values": {FIN: int(target)}, "bounds": {FIN: {"min": 1, "max": 60}}}})
    assert result["apply"] == {"applied": {FIN: target}, "refused": {}}
    assert result["exit_code"] == 0 and result["stdout_tail"] == target + "\n"
    assert dict(json.loads((state / journal.JOURNAL).read_text())["entries"]) == {FIN: original}
    assert agent.call("bye")["restored"] == {FIN: original} and netns.sysctl(FIN) == original


def test_a_refused_value_or_a_command_that_cannot_run_writes_nothing_and_runs_nothing(netns, agents, state, tmp_path):
    agent = agents()
    before = {SOMAXCONN: netns.sysctl(SOMAXCONN), FIN: netns.sysctl(FIN)}
    marker = tmp_path / "ran"
    refused = agent.call("run", {"cmd": ["touch", str(marker)], "timeout": 5, "apply": {
        "values": {SOMAXCONN: 70000, FIN: 30}, "bounds": {SOMAXCONN: {"max": 65535}}}})
    assert set(refused) == {"apply"} and set(refused["apply"]["refused"]) == {SOMAXCONN}
    assert refused["apply"]["applied"] == {FIN: "30"}  # as `apply`: the others proceed, journaled
    assert not marker.exists()  # not run: the evaluation would have measured other values than asked
    missing = agent.request(12, "run", {"cmd": "no-such-benchmark", "timeout": 5, "apply": {"values": {FIN: 31}}})
    assert missing["ok"] is False and "command not found" in missing["error"]["message"]
    assert netns.sysctl(SOMAXCONN) == before[SOMAXCONN] and netns.sysctl(FIN) == "30"  # 31 never written
    bad = agent.request(13, "run", {"cmd": "true", "timeout": 5, "apply": ["not", "an", "object"]})
    assert bad["ok"] is False and bad["error"]["type"] == "BadRequest"
    agent.call("bye")
    assert netns.sysctl(SOMAXCONN) == before[SOMAXCONN] and netns.sysctl(FIN) == before[FIN]


def test_run_takes_an_argv_list_and_never_a_shell(agents, tmp_path):
    result = agents().call("run", {"cmd": ["echo", "$HOME; rm -rf /"], "timeout": 5,
                                   "env": {"X": "1"}, "cwd": str(tmp_path)})
    assert result["stdout_tail"] == "$HOME; rm -rf /\n"


def test_a_very_short_run_still_has_a_summary(agents):
    result = agents().call("run", {"cmd": "true", "timeout": 5})
    assert result["exit_code"] == 0 and result["samples"] == 0
    assert "mem_used_pct" in result["metrics"] and "tcp_active_opens_per_s" in result["metrics"]


def test_a_timeout_kills_the_whole_process_group(agents, tmp_path):
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    result = agents().call("run", {"cmd": ["sh", "-c", "sleep 60 & echo $! > %s; sleep 60" % pidfile],
                                   "timeout": 0.5})
    assert result["timed_out"] is True and result["exit_code"] < 0
    assert time.monotonic() - start < 5
    background = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(background):
        time.sleep(0.05)
    assert not _alive(background)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_controller_that_vanishes_mid_run_stops_the_command_and_restores(netns, agents, tmp_path):
    agent = agents()
    original = netns.sysctl(FIN)
    agent.call("apply", {"values": {FIN: other_value(original, "23", "24")}})
    pidfile = tmp_path / "pid"
    agent.send(json.dumps({"id": 1, "op": "run", "args": {
        "cmd": ["sh", "-c", "echo $$ > %s; exec sleep 60" % pidfile], "timeout": 60}}) + "\n")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not pidfile.exists():
        time.sleep(0.02)
    agent.proc.stdin.close()
    agent.proc.stdout.close()  # both ends gone, as when an SSH channel drops
    assert agent.wait(10) == 0
    assert not _alive(int(pidfile.read_text()))
    assert netns.sysctl(FIN) == original


def test_a_half_closed_stdin_lets_a_run_finish_without_spinning(agents):
    agent = agents()
    agent.send(json.dumps({"id": 1, "op": "run", "args": {"cmd": "sleep 1", "timeout": 10}}) + "\n")
    agent.close_stdin()
    reply = agent.next_reply()
    assert reply["ok"] is True and reply["result"]["exit_code"] == 0
    _, status, usage = os.wait4(agent.proc.pid, 0)
    agent.proc.returncode = os.WEXITSTATUS(status)
    assert agent.proc.returncode == 0
    assert usage.ru_utime + usage.ru_stime < 0.5  # waited on the command, not on a busy loop


def test_a_missing_command_is_an_oserror(agents):
    reply = agents().request(12, "run", {"cmd": "no-such-benchmark --fast", "timeout": 5})
    assert reply["ok"] is False and reply["error"]["type"] == "OSError"
    assert reply["error"]["message"] == "command not found: no-such-benchmark"


def test_the_builtin_benchmark_runs_from_the_zipapp(agents):
    result = agents().call("run", {"cmd": "tunefleet-bench accept-storm --clients 16 --rounds 2",
                                   "timeout": 30})
    assert result["exit_code"] == 0, result["stderr_tail"]
    assert result["stdout_tail"].startswith("elapsed_ms = ")


# -- a robust loop -----------------------------------------------------------------------------

def test_bad_requests_get_errors_and_the_agent_keeps_going(agents):
    agent = agents()
    agent.send(b"this is not json\n")
    assert agent.next_reply() == {"id": None, "ok": False, "error": {
        "type": "BadRequest", "message": "line is not JSON: Expecting value: line 1 column 1 (char 0)"}}
    agent.send(b"\xff\xfe\n")
    assert agent.next_reply()["error"]["type"] == "BadRequest"
    agent.send(b"x" * (17 * 1024 * 1024) + b"\n")
    assert agent.next_reply()["error"]["type"] == "BadRequest"
    for rid, op, args, etype in (
            (1, "apply", [], "BadRequest"), (2, "launch", {}, "UnknownOp"),
            (3, "apply", {"values": [1]}, "BadRequest"), (4, "read", {"names": "x"}, "BadRequest"),
            (5, "run", {"cmd": "true"}, "BadRequest"), (6, "run", {"cmd": "'", "timeout": 1}, "BadRequest"),
            (7, "run", {"cmd": [], "timeout": 1}, "BadRequest"),
            (8, "apply", {"values": {FIN: {"x": 1}}}, None)):
        agent.send(json.dumps({"id": rid, "op": op, "args": args}) + "\n")
        reply = agent.next_reply()
        assert reply["id"] == rid
        if etype:
            assert reply["ok"] is False and reply["error"]["type"] == etype, reply
        else:
            assert reply["result"]["refused"][FIN]["type"] == "ValidationError"
    agent.send(b'{"id": 9, "op": "ping"}')  # a last line without a newline still counts
    agent.close_stdin()
    assert agent.next_reply()["ok"] is True
    assert agent.wait() == 0


def test_runs_as_a_module_and_as_a_package_folder(agents, tmp_path):
    module = agents(argv=[PYTHON, "-m", "node_agent"], cwd=str(ROOT))
    assert module.call("hello")["agent_hash"].startswith("src-")
    folder = agents(argv=[PYTHON, "-I", str(ROOT / "node_agent")], state=tmp_path / "other")
    assert folder.call("ping")["time"] > 0
    result = folder.call("run", {"cmd": "tunefleet-bench accept-storm --clients 4", "timeout": 20})
    assert result["stdout_tail"].startswith("elapsed_ms = "), result["stderr_tail"]


@pytest.mark.skipif(not PYTHON37.exists(), reason="no Python 3.7 here")
def test_runs_on_python_3_7(netns, agents, payload):
    agent = agents(argv=[str(PYTHON37), "-I", str(payload)])
    assert agent.call("hello")["python"].startswith("3.7.")
    original = netns.sysctl(FIN)
    assert agent.call("apply", {"values": {FIN: other_value(original, "19", "18")}})["refused"] == {}
    result = agent.call("run", {"cmd": "tunefleet-bench stream --mb 4 --rounds 1", "timeout": 30})
    assert result["stdout_tail"].startswith("throughput_mb_s = "), result["stderr_tail"]
    assert agent.call("bye")["restored"] == {FIN: original}
