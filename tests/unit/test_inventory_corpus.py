"""The inventory corpus against Ansible itself: `ansible-inventory --list` for hosts, groups and
connection variables, Ansible's InventoryManager (what `ansible --limit PAT --list-hosts` runs)
for host patterns.

Every case either matches Ansible or is refused with one line. ansible-core is a test
dependency (`make setup` installs it); without it these tests skip, except under CI where they
fail.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from controller.errors import InventoryError
from controller.fleet.inventory import NeedsAnsible, ansible, builtin, load_inventory
from controller.fleet.inventory.hostvars import from_listing
from controller.fleet.inventory.patterns import split

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "inventories"
CASES: dict = yaml.safe_load((CORPUS / "cases.yml").read_text())
VAULT_PASSWORD = CORPUS / "yaml-vault" / "vault-pass.txt"


def source(case: str) -> Path:
    return CORPUS / case / CASES[case]["source"]


def of_kind(kind: str) -> list[str]:
    return [c for c, spec in CASES.items() if spec["builtin"] == kind]


LIMITS = [(c, pat) for c, spec in CASES.items() for pat in spec.get("limits", ())]

# Runs under ansible's own interpreter: the hosts `ansible all --limit PAT --list-hosts` prints
_PATTERN_ORACLE = r"""
import json, sys
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader()  # as the CLI does, so ansible.builtin plugins (generator, ...) load
from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
out = {}
for src, patterns in json.load(sys.stdin).items():
    inv = InventoryManager(loader=DataLoader(), sources=[src])
    for pat in patterns:
        inv.subset(pat)
        try:
            out[f"{src}\t{pat}"] = {"hosts": [h.name for h in inv.get_hosts("all")]}
        except AnsibleError as e:
            out[f"{src}\t{pat}"] = {"error": str(e)}
        inv.subset(None)
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def ansible_tools():
    tool = ansible.find()
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("ansible-core is not installed: `make setup` installs it (the [test] extra)")
        pytest.skip("ansible-core is not installed (pip install ansible-core): no reference to compare with")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(VAULT_PASSWORD))
        yield tool


@pytest.fixture(scope="session")
def listings(ansible_tools) -> dict:
    """Case -> ansible-inventory's --list data (templated connection variables rendered) or its error."""
    def one(case):
        try:
            return ansible.list_inventory(ansible_tools, str(source(case)))
        except InventoryError as e:
            return e

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(CASES, pool.map(one, CASES)))


@pytest.fixture(scope="session")
def limit_oracle(ansible_tools) -> dict:
    python = Path(ansible_tools).read_text().splitlines()[0].removeprefix("#!").strip()
    request: dict = {}
    for case, pat in LIMITS:  # the pattern, and each of its terms alone
        request.setdefault(str(source(case)), []).extend([pat, *(t.lstrip("&!") for t in split(pat))])
    proc = subprocess.run(shlex.split(python) + ["-c", _PATTERN_ORACLE], input=json.dumps(request),
                          capture_output=True, text=True, check=True, timeout=300)
    return json.loads(proc.stdout)


def _groups_of(data: dict) -> dict[str, set[str]]:
    """host -> every group it belongs to, directly or through child groups (not all/ungrouped)."""
    def hosts_below(group, seen=()):
        body = data.get(group, {})
        found = set(body.get("hosts", []))
        for child in body.get("children", []):
            if child not in seen:
                found |= hosts_below(child, (*seen, group))
        return found

    groups: dict[str, set[str]] = {}
    for group in data:
        if group not in ("_meta", "all", "ungrouped"):
            for h in hosts_below(group):
                groups.setdefault(h, set()).add(group)
    return groups


def _expected(name: str, hv: dict, groups: set[str]) -> dict:
    """What Ansible's ssh connection would use, read straight off its variables."""
    def first(*names):
        value = next((hv[n] for n in names if hv.get(n) is not None), None)
        return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value

    port, key, become = first("ansible_ssh_port", "ansible_port"), first(
        "ansible_ssh_private_key_file", "ansible_private_key_file"), first("ansible_become")
    args = [a for v in ("ansible_ssh_common_args", "ansible_ssh_extra_args") for a in shlex.split(hv.get(v) or "")]
    return {
        "name": name,
        "host": str(first("ansible_ssh_host", "ansible_host") or name),
        "port": int(port) if port is not None else None,
        "user": first("ansible_ssh_user", "ansible_user"),
        "key": os.path.abspath(os.path.expanduser(key)) if key else None,
        "known_hosts": None,
        "python": first("ansible_python_interpreter"),
        "sudo": None if become is None else str(become).lower() in ("true", "yes", "1", "y", "on", "t"),
        "become_user": first("ansible_become_user"),
        "ssh_args": args,
        "groups": sorted(groups),
    }


def test_corpus_covers_the_forms():
    assert len(CASES) >= 25
    kinds = {k: of_kind(k) for k in ("match", "refuse", "error")}
    assert all(kinds.values()), kinds
    sources = [source(c) for c in CASES]
    assert any(s.suffix == ".ini" for s in sources) and any(s.suffix in (".yml", ".yaml") for s in sources)
    assert any(s.is_dir() for s in sources) and any((s.parent / "group_vars").is_dir() for s in sources)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c]["builtin"] != "error"])
def test_ansible_reader_gives_ansible_inventorys_hosts_and_settings(listings, case):
    data = listings[case]
    assert not isinstance(data, Exception), f"ansible-inventory rejected {case}: {data}"
    inv = from_listing(data, case, "ansible-inventory")
    groups = _groups_of(data)
    hostvars = data["_meta"]["hostvars"]
    names = set(hostvars) | set(groups) | {h for g, b in data.items() if g != "_meta" for h in b.get("hosts", [])}
    assert set(inv.hosts) == names
    for name, spec in inv.hosts.items():
        expected = _expected(name, hostvars.get(name, {}), groups.get(name, set()))
        assert {k: v for k, v in spec.as_dict().items() if k in expected} == expected, name


@pytest.mark.parametrize("case,host,field,value", [
    ("yaml-template", "t1", "host", "t1.example.com"), ("yaml-template", "t2", "user", "admin"),
    ("yaml-vault", "v1", "user", "secret_admin"), ("dir-vault-file", "s1", "user", "vaulted_user"),
])
def test_ansible_reader_renders_templates_and_decrypts_vault(listings, case, host, field, value):
    """ansible-inventory --list leaves these as Jinja2 text and ciphertext; a playbook would see the values."""
    inv = from_listing(listings[case], case, "ansible-inventory")
    assert getattr(inv.hosts[host], field) == value


@pytest.mark.parametrize("case", of_kind("match"))
def test_builtin_reader_matches_ansible_inventory(listings, case):
    oracle = listings[case]
    ours = builtin.list_inventory(source(case))
    assert ours["_meta"]["hostvars"] == oracle["_meta"]["hostvars"]  # every variable, not just ours
    assert _groups_of(ours) == _groups_of(oracle)
    a, b = from_listing(oracle, case, "ansible-inventory"), from_listing(ours, case, "builtin")
    assert list(b.hosts) == list(a.hosts)
    assert b.hosts == a.hosts


def test_host_list_source_matches_ansible(ansible_tools):
    """`--hosts 'web1,web2:2222,'`: Ansible's host_list source, when no file has that name."""
    text = "h1,h2:2222, [2001:db8::1]:22,web[1:2],"
    oracle = ansible.list_inventory(ansible_tools, text)
    assert builtin.list_host_list(text)["_meta"]["hostvars"] == oracle["_meta"]["hostvars"]
    expected = from_listing(oracle, text, "ansible-inventory").hosts
    assert load_inventory(text, reader="builtin").hosts == load_inventory(text, reader="ansible").hosts == expected
    assert list(expected) == ["h1", "h2", "2001:db8::1", "web[1:2]"]


@pytest.mark.parametrize("case", of_kind("refuse"))
def test_builtin_reader_refuses_in_one_line_what_only_ansible_resolves(listings, case):
    assert not isinstance(listings[case], Exception)  # Ansible reads it; the built-in reader must not guess
    with pytest.raises(NeedsAnsible) as e:
        load_inventory(source(case), reader="builtin")
    message = str(e.value)
    assert CASES[case]["reason"] in message and "install ansible-core" in message and "\n" not in message


@pytest.mark.parametrize("case", of_kind("error"))
def test_inventories_ansible_rejects_are_rejected_by_both_readers(listings, case):
    data = listings[case]  # the ansible reader's answer: an error, or no host (which load_inventory refuses)
    if isinstance(data, InventoryError):
        assert "\n" not in str(data) and "ansible-inventory failed: " in str(data)
    else:
        assert not from_listing(data, case, "ansible-inventory").hosts
    with pytest.raises(InventoryError) as e:
        load_inventory(source(case), reader="builtin")
    assert not isinstance(e.value, NeedsAnsible) and "\n" not in str(e.value)


@pytest.mark.parametrize("case,pattern", LIMITS)
def test_limit_selects_what_ansible_selects(listings, limit_oracle, case, pattern):
    expected = limit_oracle[f"{source(case)}\t{pattern}"]
    inventories = [from_listing(listings[case], case, "ansible-inventory")]
    if CASES[case]["builtin"] == "match":
        inventories.append(from_listing(builtin.list_inventory(source(case)), case, "builtin"))
    # Ansible warns about a term that matches nothing and goes on without it; tunefleet stops and names it
    unmatched = [t for t in split(pattern) if not limit_oracle[f"{source(case)}\t{t.lstrip('&!')}"].get("hosts")]
    hostvars = listings[case]["_meta"]["hostvars"]
    not_ssh = {h for h, hv in hostvars.items() if hv.get("ansible_connection") not in (None, "ssh", "smart")}
    for inv in inventories:
        if set(expected.get("hosts", ())) & not_ssh:  # e.g. ansible_connection=local: not over SSH
            with pytest.raises(InventoryError, match="ansible_connection=.*over SSH only"):
                inv.select(pattern)
        elif unmatched:
            with pytest.raises(InventoryError, match=re.escape(f"'{unmatched[0].lstrip('&!')}'")):
                inv.select(pattern)
        elif expected.get("hosts"):  # the same hosts; the order is Ansible's only where it is fixed (below)
            assert sorted(h.name for h in inv.select(pattern)) == sorted(expected["hosts"]), inv.reader
        else:
            with pytest.raises(InventoryError, match="leaves no host"):
                inv.select(pattern)


@pytest.mark.parametrize("case", ["ini-docs-basic", "ini-plugin-example2", "ini-ranges", "yaml-top-level-groups"])
def test_limit_keeps_ansibles_host_order(listings, limit_oracle, case):
    """Where Ansible's order is fixed (groups one level deep; deeper levels it walks through a set),
    a limit keeps it."""
    inv = from_listing(listings[case], case, "ansible-inventory")
    for pattern in CASES[case]["limits"]:
        assert [h.name for h in inv.select(pattern)] == limit_oracle[f"{source(case)}\t{pattern}"]["hosts"]


def test_pattern_oracle_agrees_with_the_ansible_command(ansible_tools, limit_oracle):
    case, pattern = "ini-children-vars", "usa:!atlanta"
    proc = subprocess.run([ansible.find("ansible"), "all", "-i", str(source(case)), "--limit", pattern,
                           "--list-hosts"], capture_output=True, text=True, check=True)
    listed = [ln.strip() for ln in proc.stdout.splitlines()[1:] if ln.strip()]
    assert listed == limit_oracle[f"{source(case)}\t{pattern}"]["hosts"]


@pytest.mark.parametrize("case", ["ini-become-ssh-args", "dir-group-host-vars", "yaml-template"])
def test_hosts_command_prints_the_ansible_answer(listings, case):
    proc = subprocess.run([sys.executable, "-m", "controller.cli", "hosts", "--hosts", str(source(case)), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected = from_listing(listings[case], case, "ansible-inventory")
    assert json.loads(proc.stdout) == [s.as_dict() for s in expected.hosts.values()]


@pytest.mark.parametrize("reader", ["ansible", "builtin"])
def test_hosts_command_rejects_in_one_line(ansible_tools, reader):
    proc = subprocess.run([sys.executable, "-m", "controller.cli", "hosts", "--hosts",
                           str(source("yaml-hosts-list"))], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TUNEFLEET_INVENTORY_READER": reader})
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "'hosts'" in proc.stderr or '"hosts"' in proc.stderr
