"""The agent contract, driven the same way over a local subprocess and over SSH.

Every write goes to a per-network-namespace knob inside a namespace the test owns (the local
transport's throwaway netns, or fleet host h1's), and is restored by the agent itself.
"""

from __future__ import annotations

import time

import pytest

from controller.errors import AgentError, AgentGone
from controller.fleet.deploy import build_payload
from controller.fleet.fleet import ConnectOptions, start_agent

KNOB = "net.core.somaxconn"
FIN = "net.ipv4.tcp_fin_timeout"


def start(transport, **kw):
    return start_agent(transport.name, transport, sudo=False, **kw)


# Hosts here share the test's transport: close only the agent (Host.close would drop the connection).


def read(host, *names):
    return host.request("read", {"names": list(names)})["values"]


def sh(transport, command):
    rc, out, err = transport.run(command)
    assert rc == 0, err
    return out.strip()


def test_hello_reports_the_host(transport):
    host = start(transport, options=ConnectOptions(knobs=(KNOB, "net.no.such_knob")))
    try:
        f = host.facts
        assert f["protocol"] == 1
        assert f["agent_hash"] == build_payload().digest[: len(f["agent_hash"])]
        assert f["kernel"] == sh(transport, "uname -r")
        assert f["boot_id"] == sh(transport, "cat /proc/sys/kernel/random/boot_id")
        assert f["python"].startswith("3.")
        assert f["cpus"] >= 1 and f["mem_total_kb"] > 0
        assert f["knobs"][KNOB]["exists"] and f["knobs"][KNOB]["writable"]
        assert f["knobs"]["net.no.such_knob"]["exists"] is False
    finally:
        host.agent.close()


def test_payload_is_uploaded_once_per_hash(transport):
    first = start(transport)
    first.agent.close()
    second = start(transport)
    second.agent.close()
    assert first.uploaded is True
    assert second.uploaded is False
    listing = sh(transport, 'ls "$HOME/.tunefleet"')
    assert build_payload().filename in listing.split()


def test_apply_reads_back_and_bye_restores(transport):
    host = start(transport)
    original = read(host, KNOB, FIN)
    target = "1999" if original[KNOB] != "1999" else "2001"
    try:
        result = host.request("apply", {"values": {KNOB: target, FIN: 17}})
        assert result["applied"] == {KNOB: target, FIN: "17"}
        assert result["refused"] == {}
        # read back independently of the agent: the kernel really has it
        assert sh(transport, "cat /proc/sys/net/core/somaxconn") == target
    finally:
        host.agent.close()
    assert sh(transport, "cat /proc/sys/net/core/somaxconn") == original[KNOB]
    assert sh(transport, "cat /proc/sys/net/ipv4/tcp_fin_timeout") == original[FIN]


def test_kernel_refusal_is_reported_with_errno_and_changes_nothing(transport):
    host = start(transport)
    before = read(host, "net.ipv4.tcp_rmem")
    try:
        result = host.request("apply", {"values": {"net.ipv4.tcp_rmem": "0 0 0"}})
        refused = result["refused"]["net.ipv4.tcp_rmem"]
        assert refused["errno"] == 22, refused
        assert result["applied"] == {}
        assert read(host, "net.ipv4.tcp_rmem") == before
    finally:
        host.agent.close()


def test_agent_rechecks_names_and_bounds(transport):
    host = start(transport)
    original = read(host, KNOB)[KNOB]
    try:
        result = host.request("apply", {
            "values": {KNOB: 70000, "net.core.somaxconn; rm -rf /": 1, "../../etc/passwd": 1},
            "bounds": {KNOB: {"min": 16, "max": 65535}},
        })
        assert set(result["refused"]) == {KNOB, "net.core.somaxconn; rm -rf /", "../../etc/passwd"}
        assert all(r["type"] == "ValidationError" for r in result["refused"].values())
        assert read(host, KNOB)[KNOB] == original
    finally:
        host.agent.close()


def test_closing_the_channel_restores(transport):
    host = start(transport)
    original = read(host, KNOB)[KNOB]
    host.request("apply", {"values": {KNOB: 333}})
    host.agent._proc.close_stdin()  # the controller vanishes without a bye
    assert host.agent.exit_status(10.0) is not None
    assert sh(transport, "cat /proc/sys/net/core/somaxconn") == original


def test_an_agent_that_left_on_its_own_says_why_at_the_next_request(transport):
    """No request in flight when it exited (here its idle bound; in a partition, its heartbeat
    bound): the next request finds the channel closed and names the agent's own reason."""
    host = start(transport, options=ConnectOptions(idle_timeout=1.5))
    original = read(host, KNOB)[KNOB]
    host.request("apply", {"values": {KNOB: 333}})
    assert host.agent.exit_status(10.0) is not None
    with pytest.raises(AgentGone) as lost:
        read(host, KNOB)
    assert "idle for 1.5 s" in lost.value.message, lost.value.message
    assert sh(transport, "cat /proc/sys/net/core/somaxconn") == original


def test_stale_journal_is_recovered_at_next_start(transport):
    host = start(transport)
    original = read(host, KNOB)[KNOB]
    host.request("apply", {"values": {KNOB: 444}})
    sh(transport, f"kill -9 {host.facts['pid']}")  # a crash: no chance to restore
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and host.agent.exit_status(0.2) is None:
        pass
    assert sh(transport, "cat /proc/sys/net/core/somaxconn") == "444"
    again = start(transport)
    try:
        assert again.facts["recovered"] == {KNOB: original}
        assert read(again, KNOB)[KNOB] == original
    finally:
        again.agent.close()


def test_run_streams_samples_and_summarizes(transport):
    host = start(transport)
    events = []
    try:
        result = host.request("run", {"cmd": "sleep 1.2", "timeout": 10, "interval": 0.5},
                              on_event=events.append, timeout=20)
        assert result["exit_code"] == 0 and not result["timed_out"]
        assert 1.1 < result["duration_s"] < 5
        assert events and all(e["event"] == "sample" for e in events)
        assert "cpu_util" in result["metrics"]
        with pytest.raises(AgentError, match="not found"):
            host.request("run", {"cmd": "no-such-benchmark --fast", "timeout": 5})
        slow = host.request("run", {"cmd": "sleep 30", "timeout": 0.5}, timeout=20)
        assert slow["timed_out"] is True
    finally:
        host.agent.close()
