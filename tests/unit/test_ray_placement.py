"""Ray placement from the inventory, and the import boundaries around the executors and strategies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from controller.errors import HostError
from controller.fleet.inventory import load_inventory
from controller.fleet.inventory.model import HostSpec
from controller.fleet.ray_executor import RESOURCE_SHARE, placement

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
