"""Through a bastion: hosts on private nets that only the local fleet's jump hosts can reach.

`BASTION=1 deploy/fleet-up.sh` (make test) puts p1 behind jump host j1 and p2 behind j1 and
j2; the machine itself has no route to them. Everything here goes through real sshds, with
the ssh config fleet-up wrote (deploy/.fleet/ssh_config), the way a user's bastion works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import conftest

pytestmark = pytest.mark.fleet

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "deploy" / ".fleet"
if conftest.FLEET.name:
    pytest.skip(f"the named fleet {conftest.FLEET.name!r} (TUNEFLEET_TEST_FLEET) has no bastion",
                allow_module_level=True)
INVENTORY = ROOT / "inventory" / "local-bastion.yml"
SSH_CONFIG = FLEET / "ssh_config"
TUNEFLEET = [sys.executable, "-m", "controller.cli"]


def tunefleet(*args, timeout=120):
    return subprocess.run([*TUNEFLEET, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def bastion() -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    up = INVENTORY.exists() and SSH_CONFIG.exists() and (FLEET / "j1" / "sshd.pid").exists()
    if not up:
        if os.environ.get("CI"):
            pytest.fail("the bastion is not up: run BASTION=1 deploy/fleet-up.sh (make test does)")
        pytest.skip("the bastion is not up: run BASTION=1 deploy/fleet-up.sh")
    return INVENTORY


def somaxconn(host: str) -> str:
    return subprocess.run(["ip", "netns", "exec", f"tf-{host}", "cat", "/proc/sys/net/core/somaxconn"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_check_through_one_and_two_hops(bastion):
    p = tunefleet("check", "--hosts", str(bastion), "--ssh-config", str(SSH_CONFIG), "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    assert rows["p1"]["ok"] and rows["p2"]["ok"], rows
    # the agents answered from the private hosts themselves
    assert rows["p1"]["hostname"] == "tf-p1" and rows["p2"]["hostname"] == "tf-p2"


def test_a_hop_with_its_own_proxyjump_is_followed():
    """`-J tf-j2`, where tf-j2 itself is reached through tf-j1 (its ProxyJump in the config)."""
    if not SSH_CONFIG.exists():
        pytest.skip("the bastion is not up")
    from controller.fleet.inventory import HostSpec
    from controller.fleet.transport import SSHTransport

    spec = HostSpec(name="p2", host="10.87.79.11", user="root", key=str(FLEET / "id_ed25519"),
                    known_hosts=str(FLEET / "known_hosts"), ssh_args=("-F", str(SSH_CONFIG), "-J", "tf-j2"))
    t = SSHTransport(spec)
    try:
        assert [c.tunefleet_alias for c in t._chain] == ["tf-j1", "tf-j2", "10.87.79.11"]
        assert t.run("hostname")[1].strip() == "tf-p2"
    finally:
        t.close()


def test_direct_connection_to_a_private_target_fails(bastion, tmp_path):
    """Without the jump the target cannot be reached: the jump is real, not a shortcut."""
    inv = tmp_path / "direct.yml"
    inv.write_text(yaml.safe_dump({
        "defaults": {"user": "root", "key": str(FLEET / "id_ed25519"), "known_hosts": str(FLEET / "known_hosts")},
        "hosts": {"p1": {"host": "10.87.78.11", "port": 22}}}))
    p = tunefleet("check", "--hosts", str(inv), "--ssh-config", "/dev/null", "--connect-timeout", "2")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "p1: cannot reach 10.87.78.11:22" in p.stderr


def test_wrong_key_on_the_bastion_names_the_hop_and_is_not_retried(bastion, tmp_path):
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        f"Host tf-j1\n  HostName 10.87.77.241\n  IdentityFile {wrong}\n"
        f"Host tf-p1\n  HostName 10.87.78.11\n  ProxyJump tf-j1\n  IdentityFile {FLEET / 'id_ed25519'}\n"
        f"Host *\n  User root\n  IdentitiesOnly yes\n  UserKnownHostsFile {FLEET / 'known_hosts'}\n")
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"hosts": {"p1": {"host": "tf-p1"}}}))
    log = FLEET / "j1" / "sshd.log"
    before = log.read_text().count("authenticating user root")
    p = tunefleet("check", "--hosts", str(inv), "--ssh-config", str(cfg))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "authentication refused" in err[0] and "jump host tf-j1" in err[0], p.stderr
    # exactly one attempt reached the bastion's sshd: authentication failures are not retried.
    # sshd logs the closed attempt from its own process, a moment after the client has gone.
    def attempts() -> int:
        return log.read_text().count("authenticating user root") - before

    deadline = time.monotonic() + 5.0
    while attempts() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # room for a retry's line to land, were there one
    assert attempts() == 1


def test_short_run_through_one_hop_restores_the_host(bastion, tmp_path):
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps({
        "workload_name": "connection storm",
        "reward_metric": "elapsed_ms",
        "reward_goal": "minimize",
        "benchmark_command": "tunefleet-bench accept-storm --clients 256",
        "benchmark_timeout": 30,
        "baseline_repeats": 1,
        "action_space": [{"param": "net.core.somaxconn", "min": 64, "max": 4096}],
        "training_config": {"algorithm": "PPO"},
    }))
    before = somaxconn("p1")
    p = tunefleet("run", "--hosts", str(bastion), "--limit", "p1", "--ssh-config", str(SSH_CONFIG),
                  "--spec", str(spec), "--strategy", "random", "--budget", "3", "--verify-repeats", "2",
                  "--confirm-top", "0", "--run-dir", str(tmp_path / "r"), "--yes", "--json", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    assert set(result["hosts"]) == {"p1"} and result["evaluations"] == 3
    trials = [json.loads(ln) for ln in (tmp_path / "r" / "trials.jsonl").read_text().splitlines()]
    assert trials and all(t["host"] == "p1" and t["error"] is None for t in trials)
    assert somaxconn("p1") == before


def test_check_with_the_inventory_alone(bastion):
    """The Ansible inventory names the ssh config itself (ansible_ssh_common_args: -F ...)."""
    p = tunefleet("check", "--hosts", str(bastion), "--limit", "p2", "--json")
    assert p.returncode == 0, p.stderr
    assert [r["hostname"] for r in json.loads(p.stdout)] == ["tf-p2"]


def test_proxycommand_through_openssh(bastion, tmp_path):
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host behind\n  HostName 10.87.78.11\n  ProxyCommand ssh -F {SSH_CONFIG} -W %h:%p tf-j1\n"
                   f"Host *\n  User root\n  IdentityFile {FLEET / 'id_ed25519'}\n"
                   f"  UserKnownHostsFile {FLEET / 'known_hosts'}\n")
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"hosts": {"p1": {"host": "behind"}}}))
    p = tunefleet("check", "--hosts", str(inv), "--ssh-config", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    assert [r["hostname"] for r in json.loads(p.stdout)] == ["tf-p1"]


def test_unknown_host_key_of_a_hop_is_refused_naming_it(bastion, tmp_path):
    empty = tmp_path / "known_hosts_j1"
    empty.write_text("")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host tf-j1\n  HostName 10.87.77.241\n  UserKnownHostsFile {empty}\n"
                   f"Host tf-p1\n  HostName 10.87.78.11\n  ProxyJump tf-j1\n"
                   f"Host *\n  User root\n  IdentityFile {FLEET / 'id_ed25519'}\n"
                   f"  UserKnownHostsFile {FLEET / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n")
    inv = tmp_path / "inv.yml"
    inv.write_text(yaml.safe_dump({"hosts": {"p1": {"host": "tf-p1"}}}))
    p = tunefleet("check", "--hosts", str(inv), "--ssh-config", str(cfg))
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 1 and len(err) == 1, p.stderr
    assert "jump host tf-j1" in err[0] and "unknown host key" in err[0]
    assert empty.read_text() == ""


def test_a_refused_connection_is_retried(bastion, tmp_path):
    """The first attempt finds the port closed; a relay to j1 opens it a moment later."""
    import socket
    import threading

    from controller.fleet.inventory import HostSpec
    from controller.fleet.transport import SSHTransport

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: connections are refused

    def relay():
        srv = socket.create_server(("127.0.0.1", port))
        srv.settimeout(5)  # without a retry nobody comes
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            return
        finally:
            srv.close()
        up = socket.create_connection(("10.87.77.241", 22))
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    j1_key = next(ln.split(" ", 1)[1] for ln in (FLEET / "known_hosts").read_text().splitlines()
                  if ln.startswith("10.87.77.241 "))
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {j1_key}\n")
    timer = threading.Timer(0.2, relay)
    timer.start()
    try:
        t = SSHTransport(HostSpec(name="j1", host="127.0.0.1", port=port, user="root",
                                  key=str(FLEET / "id_ed25519"), known_hosts=str(known), ssh_args=("-F", "/dev/null")))
        assert t.run("hostname")[1].strip() == "tf-j1"
        t.close()
    finally:
        timer.join()


def _pump(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        dst.close()
