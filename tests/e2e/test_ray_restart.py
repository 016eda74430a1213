"""A host actor whose process dies mid-run: the agent lost its channel and restored the host from its
journal by itself, and the next request fails as AgentGone (the run drops the host) instead of
continuing an evaluation on a fresh session whose values are the originals."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

KNOB = "net.ipv4.tcp_fin_timeout"


def _value(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/sys/" + KNOB.replace(".", "/")],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_dead_actor_leaves_its_host_restored_and_its_next_request_fails(inventory, monkeypatch):
    from controller.errors import AgentGone
    from controller.fleet.fleet import ConnectOptions, Fleet

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    original = _value("tf-h1")
    changed = "17" if original != "17" else "18"
    fleet = Fleet.connect([inventory.hosts["h1"]], ConnectOptions(knobs=(KNOB,), workers="ray"))
    try:
        host = fleet.hosts["h1"]
        host.request("apply", {"values": {KNOB: changed}, "bounds": {}})
        assert _value("tf-h1") == changed
        os.kill(host.facts["worker"]["pid"], signal.SIGKILL)  # the actor's process, between two requests
        deadline = time.monotonic() + 15
        while _value("tf-h1") != original and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _value("tf-h1") == original, "the agent restores the host when its channel closes"
        with pytest.raises(AgentGone):  # a benchmark now would run on the originals, not on `changed`
            host.request("run", {"cmd": "true", "timeout": 10}, timeout=30)
    finally:
        fleet.close()
    assert _value("tf-h1") == original
