"""Ray placement from the inventory, and the import boundaries around the executors and strategies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from controller.errors import HostError, UserError
from controller.fleet.executor import parse_workers
from controller.fleet.inventory import load_inventory
from controller.fleet.inventory.model import HostSpec
from controller.fleet.ray_executor import RESOURCE_SHARE, groups, placement

ANSIBLE_YAML = """
all:
  vars: {ansible_user: root}
  children:
    net_a:
      vars: {tunefleet_ray_resource: net-a}
      hosts:
        a1: {ansible_host: 192.0.2.11}
        a2: {ansible_host: 192.0.2.12, tunefleet_ray_resource: net-c}
    net_b:
      vars: {tunefleet_ray_resource: net-b}
      hosts:
        b1: {ansible_host: 192.0.2.21}
    anywhere:
      hosts:
        c1: {ansible_host: 192.0.2.31}
"""
EXPECTED = {"a1": "net-a", "a2": "net-c", "b1": "net-b", "c1": None}


def test_the_ray_resource_is_a_host_or_group_variable_as_ansible_resolves_it(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text(ANSIBLE_YAML)
    hosts = load_inventory(path).hosts
    assert {n: h.ray_resource for n, h in hosts.items()} == EXPECTED
    if shutil.which("ansible-inventory"):  # the reference, where installed
        listing = json.loads(subprocess.run(["ansible-inventory", "-i", str(path), "--list"], capture_output=True,
                                            text=True, check=True).stdout)
        hostvars = listing["_meta"]["hostvars"]
        assert {n: hostvars[n].get("tunefleet_ray_resource") for n in EXPECTED} == EXPECTED


def test_own_format_names_the_resource_per_host(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("hosts:\n  h1: {host: 192.0.2.1, ray_resource: net-a}\n  h2: {host: 192.0.2.2}\n")
    hosts = load_inventory(path).hosts
    assert hosts["h1"].ray_resource == "net-a" and hosts["h2"].ray_resource is None


def test_placement_asks_for_a_sliver_of_the_resource_or_says_no_node_offers_it():
    offered = {"CPU": 2.0, "memory": 1e9, "node:10.87.77.201": 1.0, "net-a": 1.0, "net-b": 1.0}
    assert placement(HostSpec("h0", "192.0.2.1"), offered) == {}
    assert placement(HostSpec("h1", "192.0.2.1", ray_resource="net-a"), offered) == {
        "resources": {"net-a": RESOURCE_SHARE}}
    with pytest.raises(HostError) as e:
        placement(HostSpec("h2", "192.0.2.2", ray_resource="net-x"), offered)
    assert e.value.message == ("no Ray node offers the resource 'net-x' (tunefleet_ray_resource); "
                               "the cluster offers: net-a, net-b")


def test_hosts_share_an_actor_k_at_a_time_and_only_with_hosts_of_the_same_resource():
    specs = [HostSpec(f"h{i}", f"192.0.2.{i}", ray_resource=r)
             for i, r in enumerate(["net-a", "net-b", "net-a", None, "net-a", None, "net-b"], 1)]

    def named(gs):
        return [[s.name for s in g] for g in gs]

    assert named(groups(specs, 2)) == [["h1", "h3"], ["h5"], ["h2", "h7"], ["h4", "h6"]]
    assert named(groups(specs, 16)) == [["h1", "h3", "h5"], ["h2", "h7"], ["h4", "h6"]]
    assert sorted(named(groups(specs, 1))) == sorted([s.name] for s in specs)
    for group in groups(specs, 16):
        assert len({s.ray_resource for s in group}) == 1


@pytest.mark.parametrize("value,parsed", [("threads", ("threads", None)), ("ray", ("ray", None)),
                                          ("ray:8", ("ray", 8))])
def test_workers_name_the_executor_and_for_ray_the_hosts_per_actor(value, parsed):
    assert parse_workers(value) == parsed


@pytest.mark.parametrize("value", ["ray:0", "ray:", "ray:x", "threads:2", "dask", "ray:-1"])
def test_a_bad_workers_value_is_refused(value):
    with pytest.raises(UserError, match=r"choose threads, ray or ray:K"):
        parse_workers(value)


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_fleet_does_not_import_an_executor_back_nor_ray():
    mods = _imported_after("import controller.fleet.fleet")
    assert "controller.fleet.ray_executor" not in mods and "controller.fleet.ray_hosts" not in mods
    assert "ray" not in mods


def test_strategies_register_themselves_and_the_registry_imports_none_of_them():
    mods = _imported_after("import controller.learn.strategies")
    assert not {"controller.learn.search", "controller.learn.ppo", "controller.learn.bo"} & mods
    mods = _imported_after("from controller.learn.search import STRATEGIES; list(STRATEGIES); 'bo' in STRATEGIES")
    assert not {"torch", "optuna", "controller.learn.ppo", "controller.learn.bo"} & mods
    mods = _imported_after("from controller.learn.search import STRATEGIES; STRATEGIES['bo']")
    assert "controller.learn.bo" in mods and "controller.learn.ppo" not in mods


SPEC = {"workload_name": "w", "reward_metric": "elapsed_ms", "reward_goal": "minimize",
        "benchmark_command": "tunefleet-bench accept-storm --clients 8", "benchmark_timeout": 30,
        "action_space": [{"param": "net.core.somaxconn", "min": 64, "max": 4096}]}


@pytest.mark.parametrize("command", [
    ["check"], ["restore"], ["plan", "--spec", "{spec}"], ["run", "--spec", "{spec}", "--yes"], ["chat", "--yes"]])
def test_every_command_that_touches_hosts_honours_workers_ray(command, tmp_path):
    """With --workers ray and a RAY_ADDRESS nobody answers at, each command says so in one line
    before touching a host; a command that ignored the flag would try the host over SSH instead."""
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("hosts:\n  h1: {host: 192.0.2.1}\n")
    argv = [a.format(spec=tmp_path / "spec.json") for a in command]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAY_ADDRESS": "127.0.0.1:1",
           "OPENAI_BASE_URL": "http://127.0.0.1:1/v1", "TUNEFLEET_POLICY_STORE": str(tmp_path / "policies")}
    p = subprocess.run([sys.executable, "-m", "controller.cli", *argv, "--hosts", str(hosts), "--workers", "ray",
                        "--connect-timeout", "1"], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines()[-1].endswith(
        "error: RAY_ADDRESS=127.0.0.1:1: no Ray cluster answers there (Connection refused)"), p.stderr[-2000:]
    assert "Traceback" not in p.stderr
