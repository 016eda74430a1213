"""The sudo rule grants "run the tunefleet agent" and nothing else.

Logged in as the fleet's tuning user (tfuser, deploy/fleet-up.sh installs the rule from
deploy/sudoers.d/tunefleet), every way of getting the user's own code run as root through that
rule must fail: replacing the installed agent, adding a file beside it, other arguments, other
files, environment tricks, a symlink. The user's code here is a probe that, run as root,
leaves a marker file; the probe is first shown to work (run as root directly), so a marker
that never appears means the rule held, not that the probe was broken. The normal sudo path
(check, a tiny run) still works, and an installed agent that is not this controller's build is
refused with the way to upgrade it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from controller.fleet.deploy import INSTALL_DIR, INSTALL_PATH, build_payload

TUNEFLEET = [sys.executable, "-m", "controller.cli"]
ALLOWED = f"/usr/bin/python3 -I {INSTALL_PATH}"


def tunefleet(*args, timeout=120):
    return subprocess.run([*TUNEFLEET, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def fleet(fleet_inventory):
    data = yaml.safe_load(Path(fleet_inventory).read_text())
    p = tunefleet("install", "--hosts", str(fleet_inventory), "--limit", "h1")
    assert p.returncode == 0, p.stderr
    return data


def as_tfuser(fleet, command: str, timeout=30, stdin: str = "") -> subprocess.CompletedProcess:
    d = fleet["defaults"]
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", d["key"], "-o", f"UserKnownHostsFile={d['known_hosts']}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"tfuser@{fleet['hosts']['h1']['host']}", command],
        capture_output=True, text=True, timeout=timeout, input=stdin)


def agent_as_tfuser(fleet, *requests: dict) -> dict:
    """Start the agent the way the rule allows and send it requests; {id: reply}."""
    lines = "".join(json.dumps({"id": i, **r}) + "\n" for i, r in enumerate(requests, 1))
    p = as_tfuser(fleet, f"sudo -n {ALLOWED}", stdin=lines)
    assert p.returncode == 0, p.stderr
    replies = [json.loads(line) for line in p.stdout.splitlines()]
    return {r["id"]: r for r in replies if "id" in r}


@pytest.fixture()
def probe(fleet):
    """tfuser's own code in its home, as a script, a package the agent might import, site
    hooks and a zipapp; each writes ``marker`` when it runs as root. Removed afterwards."""
    marker = f"/tmp/tf-escalated-{uuid.uuid4().hex}"
    code = f"import os\nif os.geteuid() == 0:\n    open({marker!r}, 'w').write('root')\n"
    q = shlex.quote(code)
    setup = (
        "set -e; cd ~; rm -rf lp; mkdir -p lp/node_agent lp/zip .local/lib; "
        f"printf %s {q} > lp/x.py; cp lp/x.py lp/node_agent/__init__.py; cp lp/x.py lp/node_agent/__main__.py; "
        f"cp lp/x.py lp/sitecustomize.py; cp lp/x.py lp/usercustomize.py; cp lp/x.py lp/zip/__main__.py; "
        "python3 -m zipfile -c lp/agent.pyz lp/zip/__main__.py; "
        "for v in $(ls -d /usr/lib/python3* | xargs -n1 basename); do "
        "mkdir -p .local/lib/$v/site-packages; cp lp/x.py .local/lib/$v/site-packages/usercustomize.py; done"
    )
    p = as_tfuser(fleet, setup)
    assert p.returncode == 0, p.stderr
    yield marker
    as_tfuser(fleet, "rm -rf ~/lp /tmp/tf-lp-link ~/.local/lib/python3*/site-packages/usercustomize.py")
    Path(marker).unlink(missing_ok=True)


def test_the_probe_works_when_root_runs_it(fleet, probe):
    """The control: the probe does leave its marker when it does run as root."""
    home = subprocess.run(["getent", "passwd", "tfuser"], capture_output=True, text=True).stdout.split(":")[5]
    subprocess.run(["/usr/bin/python3", f"{home}/lp/x.py"], check=True)
    assert Path(probe).exists()


def test_the_installed_agent_and_its_folders_are_root_owned_and_not_writable(fleet):
    st = os.stat(INSTALL_PATH)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o644)
    d = INSTALL_DIR
    while d != "/":
        st = os.stat(d)
        assert st.st_uid == 0 and not st.st_mode & 0o022, f"{d} is not root-owned and closed to others"
        d = os.path.dirname(d)
    assert not os.path.islink(INSTALL_PATH)


def test_sudo_lists_exactly_the_agent(fleet):
    p = as_tfuser(fleet, "sudo -n -l")
    assert p.returncode == 0, p.stderr
    commands = [line.strip() for line in p.stdout.splitlines() if "NOPASSWD" in line]
    assert commands == [f"(root) NOPASSWD: {ALLOWED}"], p.stdout


@pytest.mark.parametrize("attempt", [
    # replace the payload, add one beside it, swap the folder
    f"cp ~/lp/agent.pyz {INSTALL_PATH}",
    f"echo 'import os' >> {INSTALL_PATH}",
    f"mv {INSTALL_PATH} ~/lp/old.pyz",
    f"rm -f {INSTALL_PATH}",
    f"cp ~/lp/x.py {INSTALL_DIR}/x.py",
    f"ln -s ~/lp/agent.pyz {INSTALL_DIR}/evil.pyz",
    f"mkdir {INSTALL_DIR}/node_agent",
    f"mv {INSTALL_DIR} ~/lp/moved",
    f"chmod 0666 {INSTALL_PATH}",
])
def test_the_installed_agent_cannot_be_changed(fleet, probe, attempt):
    before = Path(INSTALL_PATH).read_bytes()
    listing = sorted(os.listdir(INSTALL_DIR))
    p = as_tfuser(fleet, attempt)
    assert p.returncode != 0, f"{attempt!r} succeeded"
    assert Path(INSTALL_PATH).read_bytes() == before and sorted(os.listdir(INSTALL_DIR)) == listing
    assert os.stat(INSTALL_PATH).st_mode & 0o7777 == 0o644


@pytest.mark.parametrize("attempt", [
    # other arguments to the allowed program and file
    f"sudo -n {ALLOWED} -c 'import os; os.system(\"python3 ~/lp/x.py\")'",
    f"sudo -n {ALLOWED} --state ~/lp",
    f"sudo -n {ALLOWED} bench stream",
    f"sudo -n /usr/bin/python3 {INSTALL_PATH}",
    "sudo -n /usr/bin/python3 -c 'exec(open(\"/home/tfuser/lp/x.py\").read())'",
    "sudo -n /usr/bin/python3 ~/lp/x.py",
    "sudo -n /usr/bin/python3 -I ~/lp/x.py",
    "sudo -n /usr/bin/python3 -I ~/lp/agent.pyz",
    "sudo -n /usr/bin/python3 -m lp.x",
    "sudo -n /usr/bin/python3",
    # the environment: set through sudo, or kept from the caller
    f"sudo -n PYTHONPATH=/home/tfuser/lp {ALLOWED}",
    f"sudo -n PYTHONSTARTUP=/home/tfuser/lp/x.py {ALLOWED}",
    f"PYTHONPATH=~/lp sudo -n -E {ALLOWED}",
    f"PYTHONPATH=~/lp sudo -n --preserve-env=PYTHONPATH {ALLOWED}",
    # symlinks to the user's code at paths that look like the agent
    "ln -sf ~/lp/agent.pyz ~/lp/link.pyz && sudo -n /usr/bin/python3 -I ~/lp/link.pyz",
    "ln -sfn ~/lp /tmp/tf-lp-link && sudo -n /usr/bin/python3 -I /tmp/tf-lp-link/agent.pyz",
    # other ways into root
    f"sudo -n -e {INSTALL_PATH}",
    "sudo -n -s",
    "sudo -n -i",
    "sudo -n /bin/sh -c id",
    f"sudo -n -u tfuser {ALLOWED}",
])
def test_sudo_refuses_anything_but_the_agent(fleet, probe, attempt):
    p = as_tfuser(fleet, attempt)
    assert p.returncode != 0, f"{attempt!r} was allowed: {p.stdout} {p.stderr}"
    refused = p.stderr.startswith(("sudo: ", "Sorry, user tfuser is not allowed"))  # sudo itself said no
    assert refused, f"{attempt!r} got past sudo: {p.stderr}"
    assert not Path(probe).exists(), f"{attempt!r} ran tfuser's code as root"


@pytest.mark.parametrize("caller_env", [
    "PYTHONPATH=~/lp PYTHONSTARTUP=~/lp/x.py PYTHONUSERBASE=~/.local PYTHONHOME=~/lp",
    "cd ~/lp &&",  # the current folder holds a node_agent package and sitecustomize
    "PYTHONINSPECT=1 PYTHONSAFEPATH= PYTHONEXECUTABLE=~/lp/x.py",
])
def test_the_allowed_command_runs_only_the_installed_agent(fleet, probe, caller_env):
    """The one command sudo allows does run, with the caller's environment and folder, and
    still never imports or starts anything of the user's: sudo resets the environment and -I
    keeps the current folder and user site-packages off sys.path."""
    p = as_tfuser(fleet, f"{caller_env} sudo -n {ALLOWED} < /dev/null")
    assert p.returncode == 0, p.stderr  # the agent ran (and exited on end of input)
    assert "tunefleet-agent" in p.stderr
    assert not Path(probe).exists(), "the allowed command ran tfuser's code as root"


def test_the_agent_runs_the_users_commands_as_the_user(fleet, probe):
    """The agent writes sysctls as root, but a command it runs for a user who came through
    sudo runs as that user: the protocol's `run` is no way around the rule."""
    uid = subprocess.run(["id", "-u", "tfuser"], capture_output=True, text=True, check=True).stdout.strip()
    replies = agent_as_tfuser(
        fleet,
        {"op": "hello", "args": {}},
        {"op": "run", "args": {"cmd": "python3 /home/tfuser/lp/x.py", "timeout": 10}},
        {"op": "run", "args": {"cmd": "id -u", "timeout": 10, "env": {"LD_PRELOAD": "", "HOME": "/root"}}},
        {"op": "run", "args": {"cmd": "tunefleet-bench stream --help", "timeout": 10}},
    )
    assert replies[1]["result"]["user"] == "root" and replies[1]["result"]["command_user"] == "tfuser"
    assert replies[2]["ok"] and replies[2]["result"]["exit_code"] == 0
    assert not Path(probe).exists(), "the agent ran tfuser's script as root"
    assert replies[3]["result"]["stdout_tail"].strip() == uid
    assert replies[4]["ok"] and replies[4]["result"]["exit_code"] == 0  # built-in benchmarks still run


def test_the_agent_refuses_root_writes_the_user_could_aim(fleet, probe):
    """Through the protocol: a deny-listed sysctl that would run a program as root, and a
    persist drop-in (or its removal) aimed through a folder the user controls."""
    target = Path(f"/tmp/tf-lp-target-{uuid.uuid4().hex}")  # root's, as /etc/ld.so.conf.d would be
    target.mkdir(mode=0o755)
    (target / "keep.conf").write_text("root's file\n")
    try:
        p = as_tfuser(fleet, f"mkdir -p ~/lp/own/sysctl.d && ln -s {target} ~/lp/sysctl.d")
        assert p.returncode == 0, p.stderr
        replies = agent_as_tfuser(
            fleet,
            {"op": "apply", "args": {"values": {"kernel.core_pattern": "|/home/tfuser/lp/x.py"}}},
            {"op": "persist", "args": {"values": {"net.core.somaxconn": "4096"},
                                       "path": "/home/tfuser/lp/sysctl.d/x.conf"}},
            {"op": "unpersist", "args": {"path": "/home/tfuser/lp/sysctl.d/keep.conf"}},
            {"op": "persist", "args": {"values": {"net.core.somaxconn": "4096"},
                                       "path": "/home/tfuser/lp/own/sysctl.d/x.conf"}},
        )
        core = replies[1]
        assert not core["ok"] or "kernel.core_pattern" in core["result"]["refused"], core
        for i in (2, 3, 4):
            assert not replies[i]["ok"], replies[i]
        assert sorted(os.listdir(target)) == ["keep.conf"]
        assert not Path("/home/tfuser/lp/own/sysctl.d/x.conf").exists()
        assert "|" not in subprocess.run(["ip", "netns", "exec", "tf-h1", "cat", "/proc/sys/kernel/core_pattern"],
                                         capture_output=True, text=True).stdout
    finally:
        for f in target.iterdir():
            f.unlink()
        target.rmdir()


def test_the_agent_started_by_the_rule_takes_its_heartbeat_bound_from_hello(fleet):
    """No arguments through sudo, so the dead-man bound comes in hello: a controller that goes
    silent (the channel stays open) gets h1's value restored within that bound."""
    read = ["ip", "netns", "exec", "tf-h1", "cat", "/proc/sys/net/core/somaxconn"]
    original = subprocess.run(read, capture_output=True, text=True, check=True).stdout.strip()
    requests = "".join(json.dumps(r) + "\n" for r in (
        {"id": 1, "op": "hello", "args": {"heartbeat_timeout": 1}},
        {"id": 2, "op": "apply", "args": {"values": {"net.core.somaxconn": str(int(original) + 1)}}}))
    # the requests, then 6 s of silence on an open channel, then the end of input
    p = as_tfuser(fleet, f"(printf %s {shlex.quote(requests)}; sleep 6) | sudo -n {ALLOWED}", timeout=30)
    replies = [json.loads(line) for line in p.stdout.splitlines()]
    assert replies[1]["result"]["applied"] == {"net.core.somaxconn": str(int(original) + 1)}
    assert "stopping (no heartbeat for 1 s): restored 1 knob(s)" in p.stderr, p.stderr
    assert subprocess.run(read, capture_output=True, text=True, check=True).stdout.strip() == original


def test_the_tuning_user_cannot_install_an_agent(fleet, fleet_inventory):
    """tunefleet install needs root or an administrator's sudo: the tuning user's rule is no way in."""
    before = Path(INSTALL_PATH).read_bytes()
    p = tunefleet("install", "--hosts", str(fleet_inventory), "--limit", "h1", "--user", "tfuser")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip() == "error: h1: sudo asks for a password to install the agent", p.stderr
    assert Path(INSTALL_PATH).read_bytes() == before


def tfuser_inventory(fleet_inventory, tmp_path) -> Path:
    data = yaml.safe_load(Path(fleet_inventory).read_text())
    data["hosts"] = {"h1": {**data["hosts"]["h1"], "user": "tfuser"}}
    data.pop("groups", None)
    p = tmp_path / "tfuser.yml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_check_and_a_tiny_run_work_through_the_rule(fleet, fleet_inventory, tmp_path):
    inv = tfuser_inventory(fleet_inventory, tmp_path)
    p = tunefleet("check", "--hosts", str(inv), "--json")
    assert p.returncode == 0, p.stderr
    row = json.loads(p.stdout)[0]
    assert row["user"] == "root"
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps({
        "workload_name": "connection storm", "reward_metric": "elapsed_ms", "reward_goal": "minimize",
        "benchmark_command": "tunefleet-bench accept-storm --clients 64", "benchmark_timeout": 30,
        "baseline_repeats": 1, "action_space": [{"param": "net.core.somaxconn", "min": 128, "max": 1024}],
        "state_space": [{"metric": "cpu_utilization", "source": "/proc/stat"}],
        "training_config": {"algorithm": "PPO"}}))
    read = ["ip", "netns", "exec", "tf-h1", "cat", "/proc/sys/net/core/somaxconn"]  # h1's own value
    original = subprocess.run(read, capture_output=True, text=True, check=True).stdout
    p = tunefleet("run", "--hosts", str(inv), "--spec", str(spec), "--strategy", "random", "--budget", "2",
                  "--verify-repeats", "2", "--run-dir", str(tmp_path / "r"), "--yes", "--json", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["evaluations"] == 2
    assert subprocess.run(read, capture_output=True, text=True, check=True).stdout == original


def test_a_missing_or_other_installed_agent_is_refused_with_the_way_to_install(fleet, fleet_inventory, tmp_path):
    inv = tfuser_inventory(fleet_inventory, tmp_path)
    ours = Path(INSTALL_PATH).read_bytes()
    assert ours == build_payload().data
    try:
        other = tmp_path / "other.pyz"
        other.write_bytes(ours + b"\0")  # a valid zip still (trailing bytes), another hash
        os.replace(other, INSTALL_PATH)
        os.chmod(INSTALL_PATH, 0o644)
        p = tunefleet("check", "--hosts", str(inv))
        assert p.returncode != 0 and "Traceback" not in p.stderr
        assert f"this controller's is {build_payload().short}: run `tunefleet install" in p.stderr, p.stderr
        os.unlink(INSTALL_PATH)
        p = tunefleet("check", "--hosts", str(inv))
        assert p.returncode != 0 and "no tunefleet agent installed" in p.stderr, p.stderr
    finally:
        p = tunefleet("install", "--hosts", str(fleet_inventory), "--limit", "h1")
        assert p.returncode == 0, p.stderr
    assert Path(INSTALL_PATH).read_bytes() == ours
    assert tunefleet("check", "--hosts", str(inv)).returncode == 0
