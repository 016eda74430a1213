"""The local fleet described as an Ansible INI inventory: the same hosts as inventory/local.yml,
and `tunefleet check` reaches them through it (key from the inventory, known_hosts through
ansible_ssh_common_args, as an Ansible user would write it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TUNEFLEET = [sys.executable, "-m", "controller.cli"]
CONNECTION = ("host", "port", "user", "key")


def tunefleet(*args, env=None):
    return subprocess.run([*TUNEFLEET, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture()
def ini_inventory(fleet_inventory, tmp_path) -> Path:
    own = yaml.safe_load(Path(fleet_inventory).read_text())
    d = own["defaults"]
    lines = ["[local]"]
    lines += [f"{n} ansible_host={h['host']} ansible_port={h['port']}" for n, h in own["hosts"].items()]
    lines += ["", "[local:vars]", f"ansible_user={d['user']}", f"ansible_ssh_private_key_file={d['key']}",
              f"ansible_ssh_common_args='-o UserKnownHostsFile={d['known_hosts']}'"]
    path = tmp_path / "hosts.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.fleet
@pytest.mark.parametrize("reader", ["builtin", "ansible"])
def test_ini_inventory_resolves_to_the_local_fleets_hosts(fleet_inventory, ini_inventory, reader):
    if reader == "ansible":
        from controller.fleet.inventory import ansible
        if ansible.find() is None and not os.environ.get("CI"):
            pytest.skip("ansible-core is not installed")
    own = tunefleet("hosts", "--hosts", str(fleet_inventory), "--json")
    ini = tunefleet("hosts", "--hosts", str(ini_inventory), "--json", env={"TUNEFLEET_INVENTORY_READER": reader})
    assert own.returncode == 0 and ini.returncode == 0, own.stderr + ini.stderr
    expected = [{k: h[k] for k in ("name", *CONNECTION, "groups")} for h in json.loads(own.stdout)]
    got = json.loads(ini.stdout)
    assert [{k: h[k] for k in ("name", *CONNECTION, "groups")} for h in got] == expected
    known_hosts = yaml.safe_load(Path(fleet_inventory).read_text())["defaults"]["known_hosts"]
    assert all(h["ssh_args"] == ["-o", f"UserKnownHostsFile={known_hosts}"] for h in got)


@pytest.mark.fleet
def test_check_works_through_an_ini_inventory(ini_inventory):
    p = tunefleet("check", "--hosts", str(ini_inventory), "--limit", "local[0:1]", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [r["name"] for r in rows] == ["h1", "h2"] and all(r["ok"] for r in rows)
