"""A second local fleet beside the default one (FLEET_NAME=x FLEET_NET=a.b.c deploy/fleet-up.sh):
its own namespaces, bridge, /24, state folder and inventory, reachable like the default fleet, and
taken down by its own fleet-down without touching the default fleet, which stays up throughout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _free_net() -> str:
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=True).stdout
    for third in range(200, 250):
        if f"10.87.{third}." not in routes:
            return f"10.87.{third}"
    pytest.skip("no free 10.87.200-249.0/24 for a second fleet")


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _default_fleet() -> tuple:
    """What must not change: the default fleet's namespaces, its hosts' sshd pids, its inventory."""
    fleet = ROOT / "deploy" / ".fleet"
    pids = {p.parent.name: p.read_text() for p in sorted(fleet.glob("h*/sshd.pid"))}
    return {n for n in _netns() if n.startswith("tf-")}, pids, (ROOT / "inventory" / "local.yml").read_text()


def test_a_named_fleet_comes_and_goes_beside_the_default_one(fleet_inventory, tmp_path):
    name, net = f"t{os.getpid() % 10000:04d}", _free_net()
    env = {**os.environ, "FLEET_NAME": name, "FLEET_NET": net, "HOSTS": "2", "PG": "0", "QUICKACK": "0"}
    inventory = ROOT / "inventory" / f"local-{name}.yml"
    before = _default_fleet()
    assert before[1], "the default fleet is up"
    try:
        up = subprocess.run([str(ROOT / "deploy" / "fleet-up.sh")], env=env, capture_output=True, text=True,
                            timeout=120)
        assert up.returncode == 0, up.stderr[-2000:]
        assert {f"tf{name}-h1", f"tf{name}-h2"} <= _netns()
        route = subprocess.run(["ip", "route", "show", f"{net}.0/24"], capture_output=True, text=True).stdout
        assert f"dev tf{name}br0" in route and "quickack" not in route, route
        p = subprocess.run([sys.executable, "-m", "controller.cli", "check", "--hosts", str(inventory), "--json"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert p.returncode == 0, p.stderr[-2000:]
        rows = json.loads(p.stdout)
        assert [(r["ok"], r["address"], r["hostname"]) for r in rows] == [
            (True, f"{net}.11:22", f"tf{name}-h1"), (True, f"{net}.12:22", f"tf{name}-h2")], rows
        assert _default_fleet() == before
    finally:
        down = subprocess.run([str(ROOT / "deploy" / "fleet-down.sh"), "--purge"], env=env, capture_output=True,
                              text=True, timeout=120)
    assert down.returncode == 0, down.stderr[-2000:]
    assert not {n for n in _netns() if n.startswith(f"tf{name}-")}
    assert not inventory.exists() and not (ROOT / "deploy" / f".fleet-{name}").exists()
    assert _default_fleet() == before
