"""Steps around a measured run (``run``'s ``before``) and steps the agent runs when it stops
(``on_exit``), on a real agent process in a throwaway network namespace (as in
test_agent_process.py, whose fixtures these tests share)."""

import json
import os
import signal
import subprocess
import time

from tests.unit.test_agent_process import PYTHON, SOMAXCONN, agents, netns, payload, state  # noqa: F401 (fixtures)


def _listener(netns, port):
    """A TCP listener on 127.0.0.1:port in the namespace, up once this returns."""
    proc = subprocess.Popen(netns.wrap([PYTHON, "-c", (
        "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind(('127.0.0.1',%d)); s.listen(8); print('up', flush=True); time.sleep(30)" % port)]),
        stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"up\n"
    return proc


def test_before_steps_run_in_order_after_the_apply_and_before_the_benchmark(netns, agents, tmp_path):
    agent = agents()
    log = tmp_path / "log"
    server = _listener(netns, 15999)
    try:
        result = agent.call("run", {
            "cmd": ["sh", "-c", "echo bench $(cat /proc/sys/net/core/somaxconn) >> %s" % log], "timeout": 10,
            "apply": {"values": {SOMAXCONN: 1234}},
            "before": [{"what": "reset", "cmd": ["sh", "-c", "echo reset >> %s" % log], "timeout": 5},
                       {"what": "ready", "wait_tcp": "127.0.0.1:15999", "timeout": 5},
                       {"what": "warm-up", "cmd": ["sh", "-c", "echo warm >> %s" % log], "timeout": 5}]})
    finally:
        server.kill()
        server.wait()
    assert log.read_text().split("\n")[:3] == ["reset", "warm", "bench 1234"]
    assert [s["what"] for s in result["before"]] == ["reset", "ready", "warm-up"]
    assert all(s["ok"] for s in result["before"]) and result["exit_code"] == 0
    assert result["apply"]["applied"] == {SOMAXCONN: "1234"}


def test_a_failing_step_stops_the_request_before_the_benchmark(netns, agents, tmp_path):
    agent = agents()
    original = netns.sysctl(SOMAXCONN)
    marker = tmp_path / "benchmark-ran"
    result = agent.call("run", {
        "cmd": ["touch", str(marker)], "timeout": 10, "apply": {"values": {SOMAXCONN: 1111}},
        "before": [{"what": "reset", "cmd": ["sh", "-c", "echo no table pgbench_history >&2; exit 3"],
                    "timeout": 5}]})
    assert not marker.exists()
    failed = result["before_failed"]
    assert failed["message"] == "reset exited 3: no table pgbench_history"
    assert "exit_code" not in result and result["apply"]["applied"] == {SOMAXCONN: "1111"}
    agent.call("bye")
    assert netns.sysctl(SOMAXCONN) == original  # what was applied is journaled and restored as always


def test_a_port_that_never_opens_fails_the_wait_within_its_bound(agents):
    agent = agents()
    started = time.monotonic()
    result = agent.call("run", {"cmd": ["true"], "timeout": 5,
                                "before": [{"what": "nginx ready", "wait_tcp": "127.0.0.1:15998", "timeout": 0.5}]})
    assert time.monotonic() - started < 3
    assert result["before_failed"]["message"].startswith("nginx ready did not accept on 127.0.0.1:15998 within 0.5 s")


def test_bad_steps_are_refused_before_anything_is_written(netns, agents):
    agent = agents()
    original = netns.sysctl(SOMAXCONN)
    for before, why in (([{"what": "x", "cmd": ["no-such-program-here"], "timeout": 5}], "command not found"),
                        ([{"what": "x", "wait_tcp": "nohost", "timeout": 5}], "host:port"),
                        ([{"what": "x", "cmd": ["true"]}], "timeout"),
                        ("reset", "list")):
        reply = agent.request(7, "run", {"cmd": ["true"], "timeout": 5, "apply": {"values": {SOMAXCONN: 1212}},
                                         "before": before})
        assert not reply["ok"] and why in reply["error"]["message"], reply
    assert netns.sysctl(SOMAXCONN) == original


def _exit_step(path, text):
    return {"what": "stop", "cmd": ["sh", "-c", "echo %s $(cat /proc/sys/net/core/somaxconn) >> %s" % (text, path)],
            "timeout": 5}


def test_exit_steps_run_at_bye_newest_first_and_before_the_knobs_go_back(netns, agents, tmp_path):
    agent = agents()
    log = tmp_path / "exits"
    agent.call("apply", {"values": {SOMAXCONN: 2345}})
    teardown = agent.call("on_exit", {"key": "teardown", "steps": [_exit_step(log, "teardown")]})
    assert teardown["registered"] == ["teardown"]
    assert agent.call("on_exit", {"key": "service", "steps": [_exit_step(log, "service")]})["registered"] == [
        "teardown", "service"]
    agent.call("bye")
    agent.wait()
    # the server stopped while the tuned value was still in force, then the teardown, then the restore
    assert log.read_text().split("\n")[:2] == ["service 2345", "teardown 2345"]
    assert netns.sysctl(SOMAXCONN) != "2345"


def test_exit_steps_can_run_now_and_are_then_forgotten(agents, tmp_path):
    agent = agents()
    log = tmp_path / "exits"
    agent.call("on_exit", {"key": "service", "steps": [_exit_step(log, "service")]})
    ran = agent.call("on_exit", {"key": "service", "run": True})
    assert [r["ok"] for r in ran["ran"]] == [True] and ran["registered"] == []
    agent.call("bye")
    agent.wait()
    assert log.read_text().count("service") == 1


def test_an_agent_killed_with_exit_steps_pending_has_them_run_by_the_next(netns, agents, state, tmp_path):
    log = tmp_path / "exits"
    first = agents()
    first.call("on_exit", {"key": "service", "steps": [_exit_step(log, "service")]})
    assert json.loads((state / "exits.json").read_text())["entries"][0][0] == "service"  # on disk before the reply
    os.kill(first.proc.pid, signal.SIGKILL)
    first.wait()
    assert not log.exists()
    hello = agents().call("hello")
    assert [(r["key"], r["ok"]) for r in hello["exits_recovered"]] == [("service", True)]
    assert log.read_text().startswith("service ") and not (state / "exits.json").exists()


def test_a_failing_exit_step_is_reported_and_the_others_still_run(agents, tmp_path):
    agent = agents()
    log = tmp_path / "exits"
    agent.call("on_exit", {"key": "teardown", "steps": [_exit_step(log, "teardown")]})
    agent.call("on_exit", {"key": "service", "steps": [{"what": "stop", "cmd": ["false"], "timeout": 5}]})
    agent.close_stdin()
    agent.wait()
    assert "exit step stop (service) failed" in agent.stderr()
    assert log.read_text().startswith("teardown ")


def test_a_long_step_is_heard_every_second_so_the_controller_does_not_think_the_agent_gone(agents):
    agent = agents()
    result = agent.call("run", {"cmd": ["true"], "timeout": 5,
                                "before": [{"what": "setup 1", "cmd": ["sleep", "2.5"], "timeout": 10}]})
    assert result["before"][0]["ok"]
    steps = [e for e in agent.events if e["event"] == "step"]
    assert len(steps) >= 3 and {e["data"]["what"] for e in steps} == {"setup 1"}
