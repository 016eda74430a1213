"""`tunefleet check` against the local fleet: healthy hosts, and each failure as one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

TUNEFLEET = [sys.executable, "-m", "controller.cli"]


def tunefleet(*args, timeout=60):
    return subprocess.run([*TUNEFLEET, *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(p):
    assert p.returncode != 0
    assert "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if "error" in line]
    assert errors, p.stderr
    return "\n".join(errors)


def variant(tmp_path, fleet_inventory, name="inv.yml", **host_fields):
    """A copy of the local inventory with host h1 changed."""
    data = yaml.safe_load(Path(fleet_inventory).read_text())
    data["hosts"] = {"h1": {**data["hosts"]["h1"], **host_fields}}
    data.pop("groups", None)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_check_shows_healthy_hosts_sharing_one_kernel(fleet_inventory):
    p = tunefleet("check", "--hosts", str(fleet_inventory), "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert [r["name"] for r in rows] == ["h1", "h2", "h3"]
    assert all(r["ok"] and r["error"] is None for r in rows)
    assert len({r["hostname"] for r in rows}) == 3  # distinct hosts...
    assert len({r["boot_id"] for r in rows}) == 1  # ...on one kernel, and check says so
    assert rows[0]["shares_kernel_with"] == ["h2", "h3"]
    assert all(r["rtt_ms"] < 20 for r in rows)


def test_check_table_and_limit(fleet_inventory):
    p = tunefleet("check", "--hosts", str(fleet_inventory), "--limit", "h2")
    assert p.returncode == 0, p.stderr
    assert "h2" in p.stdout and "h1" not in p.stdout
    assert "1/1 hosts healthy" in p.stdout


def test_ansible_inventory(fleet_inventory, tmp_path):
    own = yaml.safe_load(Path(fleet_inventory).read_text())
    d = own["defaults"]
    ansible = {"all": {
        "vars": {"ansible_user": d["user"], "ansible_ssh_private_key_file": d["key"]},
        "children": {"tuned": {"hosts": {
            n: {"ansible_host": h["host"], "ansible_port": h["port"]} for n, h in own["hosts"].items()}}},
    }}
    inv = tmp_path / "ansible.yml"
    inv.write_text(yaml.safe_dump(ansible))
    # Ansible inventories carry no known_hosts path: point ssh at the fleet's keys with an ssh config
    # (ssh reads ~/.ssh/config from the account's home, not $HOME: hence --ssh-config)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host *\n  UserKnownHostsFile {d['known_hosts']}\n")
    env_home = tmp_path / "home"
    (env_home / ".ssh").mkdir(parents=True)
    (env_home / ".ssh" / "config").write_text(cfg.read_text())
    p = subprocess.run([*TUNEFLEET, "check", "--hosts", str(inv), "--limit", "tuned", "--json",
                        "--ssh-config", str(cfg)],
                       capture_output=True, text=True, timeout=60, env={"HOME": str(env_home), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    assert [r["ok"] for r in json.loads(p.stdout)] == [True, True, True]


def test_unknown_host_key_is_refused_with_the_way_to_accept_it(fleet_inventory, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv = variant(tmp_path, fleet_inventory, known_hosts=str(empty))
    p = tunefleet("check", "--hosts", str(inv))
    err = one_line_error(p)
    assert "unknown host key" in err and "--accept-new-host-keys" in err
    assert empty.read_text() == ""  # never silently added
    p = tunefleet("check", "--hosts", str(inv), "--accept-new-host-keys")
    assert p.returncode == 0, p.stderr
    assert "ssh-ed25519" in empty.read_text()


def test_changed_host_key_is_refused(fleet_inventory, tmp_path):
    data = yaml.safe_load(Path(fleet_inventory).read_text())
    h1 = data["hosts"]["h1"]["host"]
    wrong = tmp_path / "known_hosts"
    # h2's key listed for h1's address: a host key mismatch
    lines = Path(data["defaults"]["known_hosts"]).read_text().splitlines()
    h2_key = next(ln for ln in lines if ln.startswith(data["hosts"]["h2"]["host"] + " "))
    wrong.write_text(h1 + " " + h2_key.split(" ", 1)[1] + "\n")
    p = tunefleet("check", "--hosts", str(variant(tmp_path, fleet_inventory, known_hosts=str(wrong))))
    assert "does NOT match" in one_line_error(p)


def test_unreachable_host_fails_fast(fleet_inventory, tmp_path):
    inv = variant(tmp_path, fleet_inventory, host="127.0.0.1", port=1)
    started = time.monotonic()
    p = tunefleet("check", "--hosts", str(inv), "--connect-timeout", "3")
    assert time.monotonic() - started < 10
    assert "cannot reach 127.0.0.1:1" in one_line_error(p)


def test_refused_authentication(fleet_inventory, tmp_path):
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    p = tunefleet("check", "--hosts", str(variant(tmp_path, fleet_inventory, key=str(key))))
    assert "authentication refused for root@" in one_line_error(p)


def test_non_root_user_runs_the_agent_through_sudo(fleet_inventory, tmp_path):
    p = tunefleet("check", "--hosts", str(variant(tmp_path, fleet_inventory, user="tfuser")), "--json")
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)[0]
    assert row["user"] == "root"  # the agent itself runs as root, through the sudoers drop-in


def test_sudo_password_prompt_is_reported(fleet_inventory, tmp_path):
    # sudoers allows only /usr/bin/python3 on the agent payload; another interpreter path needs a password
    inv = variant(tmp_path, fleet_inventory, user="tfuser", python="/usr/bin/python3.11")
    assert "sudo asks for a password" in one_line_error(tunefleet("check", "--hosts", str(inv)))


def test_missing_python_is_reported(fleet_inventory, tmp_path):
    inv = variant(tmp_path, fleet_inventory, python="/nonexistent/python3")
    err = one_line_error(tunefleet("check", "--hosts", str(inv)))
    assert "did not start" in err or "python3" in err
