"""Inventories: our YAML, Ansible's formats through the built-in reader, host patterns, clear errors.

Comparisons with Ansible itself are in test_inventory_corpus.py; these run without ansible-core."""

import re

import pytest

from controller.errors import InventoryError
from controller.fleet.inventory import NeedsAnsible, load_inventory
from controller.fleet.inventory.hostnames import expand, split_port
from controller.fleet.inventory.patterns import split

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
    ("web1,db2", ["db2", "web1"]),  # a limit keeps inventory order, as Ansible's --limit does
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


@pytest.mark.parametrize("pattern,names", [
    ("web[01:03]", ["web01", "web02", "web03"]),
    ("db-[a:c].example.com", ["db-a.example.com", "db-b.example.com", "db-c.example.com"]),
    ("node[1:10:3]", ["node1", "node4", "node7", "node10"]),
    ("r[1:2]-u[1:2]", ["r1-u1", "r1-u2", "r2-u1", "r2-u2"]),
    ("[:2]x", ["0x", "1x", "2x"]),
    ("plain", ["plain"]),
])
def test_host_ranges(pattern, names):
    assert expand(pattern) == names


@pytest.mark.parametrize("pattern,message", [
    ("web[01:3]", "equal length"), ("web[1]", "begin:end"), ("web[1:]", "must give an end"),
    ("web[c:a]", "begin <= end"),
])
def test_bad_host_ranges(pattern, message):
    with pytest.raises(InventoryError, match=message):
        expand(pattern)


@pytest.mark.parametrize("key,expected", [
    ("web1:2222", ("web1", 2222)), ("192.0.2.1:22", ("192.0.2.1", 22)),
    ("[2001:db8::1]:2200", ("2001:db8::1", 2200)), ("2001:db8::1", ("2001:db8::1", None)),
    ("web[01:03]:2222", ("web[01:03]", 2222)), ("web[01:03]", ("web[01:03]", None)),
])
def test_host_port_keys(key, expected):
    assert split_port(key) == expected


@pytest.mark.parametrize("limit,terms", [
    ("a,b", ["a", "b"]), ("a:b", ["a", "b"]), ("web:&db:!db2", ["web", "&db", "!db2"]), ("g[0:2]", ["g[0:2]"]),
    ("g[0:2]:h", ["g[0:2]", "h"]), ("db1:2222", ["db1:2222"]), ("2001:db8::1", ["2001:db8::1"]),
    (" a , b ", ["a", "b"]),
])
def test_pattern_terms_split_as_ansible_splits_them(limit, terms):
    assert split(limit) == terms


@pytest.mark.parametrize("limit,expected", [
    ("db:&web", None), ("all:&db", ["db1", "db2"]), ("~db[12]", ["db1", "db2"]), ("db[0]", ["db1"]),
    ("db[-1]", ["db2"]), ("db[0:1]", ["db1", "db2"]), ("&db", ["db1", "db2"]), ("!db", ["web1"]),
    ("db:web:!db1", ["db2", "web1"]), ("web*:db[1]", ["db2", "web1"]),
])
def test_limit_pattern_language(tmp_path, limit, expected):
    inv = load_inventory(write(tmp_path, OWN))
    if expected is None:
        with pytest.raises(InventoryError, match="leaves no host"):
            inv.select(limit)
    else:
        assert [h.name for h in inv.select(limit)] == expected


@pytest.mark.parametrize("limit,message", [
    ("db[5]", "'db\\[5\\]' has no host at index 5 .*db1, db2"),
    ("web,wbe1", "'wbe1' matches no host or group"),
    ("all:!nosuch", "'nosuch' matches no host or group"),
    ("~db[", "invalid pattern"),
])
def test_limit_errors_name_the_term(tmp_path, limit, message):
    inv = load_inventory(write(tmp_path, OWN))
    with pytest.raises(InventoryError, match=message):
        inv.select(limit)


INI = """
[web]
web[1:2] ansible_user=deploy

[db]
db1 ansible_host=192.0.2.9:2222 ansible_port=2200 ansible_become=false

[prod:children]
web
db

[prod:vars]
ansible_ssh_common_args='-o ProxyJump=ops@bastion:2222'
ansible_python_interpreter=/usr/bin/python3
"""


def test_builtin_reader_ini(tmp_path):
    inv = load_inventory(write(tmp_path, INI, "hosts.ini"), reader="builtin")
    assert list(inv.hosts) == ["web1", "web2", "db1"]
    web1, db1 = inv.hosts["web1"], inv.hosts["db1"]
    assert (web1.user, web1.python, web1.sudo, web1.groups) == ("deploy", "/usr/bin/python3", None, ("prod", "web"))
    assert web1.ssh_args == ("-o", "ProxyJump=ops@bastion:2222")
    assert (db1.host, db1.port, db1.sudo) == ("192.0.2.9:2222", 2200, False)
    assert inv.groups["prod"] == ["web1", "web2", "db1"]


def test_builtin_reader_directory_with_group_and_host_vars(tmp_path):
    inv_dir = tmp_path / "inventory"
    (inv_dir / "group_vars").mkdir(parents=True)
    (inv_dir / "host_vars").mkdir()
    (inv_dir / "hosts.yml").write_text("web:\n  vars: {ansible_user: inline}\n  hosts: "
                                       "{w1: {ansible_port: 2201}, w2: }\n")
    (inv_dir / "more.ini").write_text("[db]\nd1\n")
    (inv_dir / "group_vars" / "web.yml").write_text("ansible_user: from_file\n")
    (inv_dir / "group_vars" / "all").write_text("ansible_become: true\n")
    (inv_dir / "host_vars" / "w1.yaml").write_text("ansible_port: 2202\n")
    inv = load_inventory(inv_dir, reader="builtin")
    assert list(inv.hosts) == ["w1", "w2", "d1"]
    assert (inv.hosts["w1"].user, inv.hosts["w1"].port, inv.hosts["w1"].sudo) == ("from_file", 2202, True)
    assert (inv.hosts["d1"].user, inv.hosts["d1"].sudo) == (None, True)


@pytest.mark.parametrize("text,feature", [
    ("all:\n  hosts:\n    a:\n      ansible_user: !vault |\n        $ANSIBLE_VAULT;1.1;AES256\n        3131\n",
     "!vault"),
    ("all:\n  hosts:\n    a: {ansible_host: '{{ lookup(\"env\", \"X\") }}'}\n", "Jinja2 template"),
    ("plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n", "inventory plugin"),
])
def test_builtin_reader_refuses_what_only_ansible_resolves(tmp_path, text, feature):
    with pytest.raises(NeedsAnsible, match=re.escape(feature) + ".*install ansible-core") as e:
        load_inventory(write(tmp_path, text), reader="builtin")
    assert "\n" not in str(e.value)


def test_builtin_reader_refuses_inventory_scripts(tmp_path):
    script = write(tmp_path, "#!/bin/sh\necho '{}'\n", "inventory.sh")
    script.chmod(0o755)
    with pytest.raises(NeedsAnsible, match="dynamic inventory script"):
        load_inventory(script, reader="builtin")


def test_forcing_a_reader(tmp_path, monkeypatch):
    path = write(tmp_path, INI, "hosts.ini")
    monkeypatch.setenv("TUNEFLEET_INVENTORY_READER", "builtin")
    assert load_inventory(path).reader == "builtin"
    monkeypatch.setenv("TUNEFLEET_INVENTORY_READER", "neither")
    with pytest.raises(InventoryError, match="choose one of auto, ansible, builtin"):
        load_inventory(path)


def test_hosts_ansible_would_not_reach_over_ssh_are_refused_when_selected(tmp_path):
    text = "localhost ansible_connection=local\n[web]\nw1 ansible_connection=ssh\nw2 ansible_connection=smart\n"
    inv = load_inventory(write(tmp_path, text, "hosts.ini"), reader="builtin")
    assert [h.name for h in inv.select("web")] == ["w1", "w2"]
    with pytest.raises(InventoryError, match="host localhost: ansible_connection=local.*--limit 'all:!localhost'"):
        inv.select(None)


def test_builtin_reader_refuses_ansible_settings_that_change_the_meaning(tmp_path, monkeypatch):
    path = write(tmp_path, INI, "hosts.ini")
    cfg = write(tmp_path, "[defaults]\nhash_behaviour = merge\n", "ansible.cfg")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(cfg))
    with pytest.raises(NeedsAnsible, match="ansible.cfg: the Ansible setting hash_behaviour"):
        load_inventory(path, reader="builtin")
    cfg.write_text("[defaults]\nremote_tmp = /tmp\n")
    assert load_inventory(path, reader="builtin").hosts
    monkeypatch.setenv("ANSIBLE_INVENTORY_IGNORE", ".ini")
    with pytest.raises(NeedsAnsible, match="ANSIBLE_INVENTORY_IGNORE: the Ansible setting inventory ignore_ext"):
        load_inventory(path, reader="builtin")
