"""Inventories: our YAML, Ansible's YAML, --limit selection, clear errors."""

import pytest

from controller.errors import InventoryError
from controller.fleet.inventory import load_inventory

OWN = """
defaults: {user: tuner, key: keys/id_ed25519}
hosts:
  db1: {host: 192.0.2.10}
  db2: {host: 192.0.2.11, port: 2222, user: root}
  web1: {host: 192.0.2.20, known_hosts: /etc/ssh/ssh_known_hosts}
groups:
  db: [db1, db2]
  web: [web1]
"""

ANSIBLE = """
all:
  vars:
    ansible_user: tuner
    ansible_ssh_private_key_file: ~/.ssh/tuner
  hosts:
    bastion: {ansible_host: 198.51.100.1}
  children:
    db:
      vars: {ansible_port: 2200}
      hosts:
        db1: {ansible_host: 198.51.100.10}
        db2: {ansible_host: 198.51.100.11, ansible_user: root}
    web:
      children:
        frontends:
          hosts:
            web1: {ansible_host: 198.51.100.20, ansible_python_interpreter: /usr/bin/python3.9}
"""


def write(tmp_path, text, name="inv.yml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_ansible_host_vars_win_over_group_vars_listed_later(tmp_path):
    text = """
all:
  hosts:
    db3: {ansible_host: 198.51.100.13, ansible_user: root}
  children:
    db:
      vars: {ansible_user: tuner}
      hosts: {db3: {}}
"""
    assert load_inventory(write(tmp_path, text)).hosts["db3"].user == "root"


def test_own_format_defaults_groups_and_relative_paths(tmp_path):
    inv = load_inventory(write(tmp_path, OWN))
    assert list(inv.hosts) == ["db1", "db2", "web1"]
    db1, db2 = inv.hosts["db1"], inv.hosts["db2"]
    assert (db1.user, db1.port, db1.address) == ("tuner", None, "192.0.2.10:22")
    assert (db2.user, db2.port) == ("root", 2222)
    assert db1.key == str(tmp_path / "keys/id_ed25519")
    assert inv.hosts["web1"].known_hosts == "/etc/ssh/ssh_known_hosts"
    assert db1.groups == ("db",)


def test_ansible_format_vars_inherit_and_nest(tmp_path):
    inv = load_inventory(write(tmp_path, ANSIBLE))
    assert set(inv.hosts) == {"bastion", "db1", "db2", "web1"}
    assert inv.hosts["db1"].port == 2200 and inv.hosts["db1"].user == "tuner"
    assert inv.hosts["db2"].user == "root"
    assert inv.hosts["bastion"].port is None
    assert inv.hosts["web1"].python == "/usr/bin/python3.9"
    assert inv.hosts["db1"].key.endswith("/.ssh/tuner") and not inv.hosts["db1"].key.startswith("~")
    assert inv.groups["web"] == ["web1"] and inv.groups["frontends"] == ["web1"]


@pytest.mark.parametrize("limit,expected", [
    (None, ["db1", "db2", "web1"]),
    ("db", ["db1", "db2"]),
    ("web1,db2", ["web1", "db2"]),
    ("db:!db2", ["db1"]),
    ("!web", ["db1", "db2"]),
    ("db*", ["db1", "db2"]),
    ("all", ["db1", "db2", "web1"]),
])
def test_limit(tmp_path, limit, expected):
    inv = load_inventory(write(tmp_path, OWN))
    assert [h.name for h in inv.select(limit)] == expected


def test_limit_matching_nothing_names_hosts_and_groups(tmp_path):
    inv = load_inventory(write(tmp_path, OWN))
    with pytest.raises(InventoryError, match="'cache' matches no host or group .*db1, db2, web1.*groups: db, web"):
        inv.select("cache")


@pytest.mark.parametrize("text,message", [
    ("hosts: [", "not valid YAML"),
    ("- a\n- b\n", "must be a mapping of groups|should be a dictionary"),
    ("servers: {}\n", "names no host"),
    ("hosts: {}\n", "names no host"),
    ("hosts: {a: {host: x, port: http}}\n", "host a: port must be a number"),
    ("hosts: {a: {host: x, hostname: y}}\n", "unknown field"),
    ("hosts: {a: {host: x}}\ngroups: {g: [a, b]}\n", "group g names unknown host"),
])
def test_bad_inventories_give_one_clear_line(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message) as e:
        load_inventory(write(tmp_path, text))
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(InventoryError, match="no such inventory file or directory"):
        load_inventory(tmp_path / "nope.yml")
