"""What else manages a knob, said before anything changes, and checked against the real tools.

h1 gets what an administrator's host has: two sysctl.d files that set net.core.somaxconn and an
active TuneD profile that sets it too. `plan`, `check` and `run --dry-run` must name all three and
the file that wins at boot, and that must be what the real `sysctl --system` applies: it runs over
h1's own files in a throwaway network namespace, as an unprivileged user in a user namespace of its
own, so the kernel refuses every setting that is not that namespace's. Then the real TuneD daemon
runs on h1 with that profile: it applies 3000, then the sysctl files again (reapply_sysctl), which
must leave what the scan said wins over it; while it runs, a run that tunes the knob is refused in
one line saying how to proceed. `--persist` names its file and the files it overrides, and refuses
a drop-in that would lose at boot unless --force.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.conftest import FLEET
from tests.e2e.test_drift import SOMAXCONN, ns_read
from tests.e2e.test_tuning import STORM, TUNEFLEET

ETC = FLEET.dir / "h1" / "etc"   # h1's /etc/sysctl.d, /etc/sysctl.conf and /etc/tuned (fleet-host.sh)
PROFILE = "tf-conflict"


def cli(*args, timeout=120):
    return subprocess.run([*TUNEFLEET, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def administered(fleet_inventory, tmp_path):
    """h1 with 50-admin.conf (1000), 60-other.conf (2000) and an active TuneD profile (3000)."""
    if not (ETC / "sysctl.d").is_dir() or not (ETC / "tuned").is_dir():
        pytest.skip("this fleet's hosts have no sysctl configuration of their own (fleet-up.sh before host_etc)")
    original = ns_read("h1", SOMAXCONN)
    saved = {n: (ETC / "tuned" / n).read_bytes() for n in ("active_profile", "profile_mode")
             if (ETC / "tuned" / n).exists()}
    (ETC / "sysctl.d" / "50-admin.conf").write_text(f"# the administrator's\n{SOMAXCONN} = 1000\n")
    (ETC / "sysctl.d" / "60-other.conf").write_text(f"{SOMAXCONN.replace('.', '/')}=2000\n")
    (ETC / "tuned" / PROFILE).mkdir()
    (ETC / "tuned" / PROFILE / "tuned.conf").write_text(f"[main]\nsummary=test\n\n[sysctl]\n{SOMAXCONN}=3000\n")
    (ETC / "tuned" / "active_profile").write_text(PROFILE + "\n")
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps(STORM))
    try:
        yield spec
    finally:
        for name in ("50-admin.conf", "60-other.conf", "95-late.conf"):
            (ETC / "sysctl.d" / name).unlink(missing_ok=True)
        shutil.rmtree(ETC / "tuned" / PROFILE, ignore_errors=True)
        for name, data in saved.items():
            (ETC / "tuned" / name).write_bytes(data)
        subprocess.run(["ip", "netns", "exec", FLEET.ns("h1"), "sh", "-c",
                        f"echo {original} > /proc/sys/net/core/somaxconn"], check=True)


def sysctl_system_oracle() -> str:
    """net.core.somaxconn after the real `sysctl --system` over h1's files, in a throwaway namespace."""
    script = (f"mount --bind {ETC}/sysctl.d /etc/sysctl.d && mount --bind {ETC}/sysctl.conf /etc/sysctl.conf && "
              "{ sysctl --system >/dev/null 2>&1; cat /proc/sys/net/core/somaxconn; }")
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                        "unshare", "--user", "--map-root-user", "--net", "--mount", "--", "sh", "-c", script],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_plan_names_every_setter_and_the_winner_that_sysctl_system_applies(fleet_inventory, administered):
    p = cli("plan", "--spec", str(administered), "--hosts", str(fleet_inventory), "--limit", "h1", "--json")
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    knob = plan["managed"]["h1"][SOMAXCONN]
    assert [(f["path"], f["value"]) for f in knob["files"]] == [
        ("/etc/sysctl.d/50-admin.conf", "1000"), ("/etc/sysctl.d/60-other.conf", "2000")]
    assert knob["boot"]["path"] == "/etc/sysctl.d/60-other.conf"
    assert knob["tuned"]["profile"] == PROFILE and knob["tuned"]["value"] == "3000"
    assert knob["after_tuned"]["path"] == "/etc/sysctl.d/60-other.conf"  # TuneD applies the files again
    assert knob["boot"]["value"] == sysctl_system_oracle() == "2000"
    lines = plan["managed_lines"]["h1"]
    assert lines[0] == (f"{SOMAXCONN}: set by /etc/sysctl.d/50-admin.conf:2 (1000), /etc/sysctl.d/60-other.conf:1 "
                        "(2000); at boot /etc/sysctl.d/60-other.conf wins (2000)"), lines
    assert lines[1].startswith(f"{SOMAXCONN}: TuneD profile '{PROFILE}' sets 3000 ") and \
        lines[1].endswith("; /etc/sysctl.d/60-other.conf wins over it (TuneD applies the sysctl files again)")
    text = cli("plan", "--spec", str(administered), "--hosts", str(fleet_inventory), "--limit", "h1")
    assert f"h1: {lines[0]}" in text.stdout and f"h1: {lines[1]}" in text.stdout
    check = cli("check", "--hosts", str(fleet_inventory), "--limit", "h1")
    assert check.returncode == 0 and f"h1: {lines[0]}" in check.stdout, check.stdout
    dry = cli("run", "--spec", str(administered), "--hosts", str(fleet_inventory), "--limit", "h1", "--dry-run")
    assert dry.returncode == 0 and f"h1: {lines[0]}" in dry.stderr and "dry run: nothing was changed" in dry.stderr
    # a file that masks another of the same name in a later folder is followed as sysctl follows it
    (ETC / "sysctl.d" / "95-late.conf").write_text(f"{SOMAXCONN} = 2100\n")
    again = json.loads(cli("plan", "--spec", str(administered), "--hosts", str(fleet_inventory), "--limit", "h1",
                           "--json").stdout)
    assert again["managed"]["h1"][SOMAXCONN]["boot"]["value"] == sysctl_system_oracle() == "2100"


def test_persist_names_its_file_and_refuses_to_lose_at_boot_unless_forced(fleet_inventory, administered):
    run = ("run", "--spec", str(administered), "--hosts", str(fleet_inventory), "--limit", "h1", "--dry-run",
           "--persist")
    p = cli(*run)
    assert p.returncode == 0, p.stderr
    assert ("h1: --persist writes /etc/sysctl.d/90-tunefleet.conf, overriding /etc/sysctl.d/50-admin.conf, "
            "/etc/sysctl.d/60-other.conf") in p.stderr, p.stderr
    (ETC / "sysctl.d" / "95-late.conf").write_text(f"{SOMAXCONN} = 2100\n")
    refused = cli(*run)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        "tunefleet: error: h1: /etc/sysctl.d/90-tunefleet.conf would not win at boot: /etc/sysctl.d/95-late.conf "
        f"sets {SOMAXCONN} = 2100 after it; --force persists anyway")
    forced = cli(*run, "--force")
    assert forced.returncode == 0 and "(--force)" in forced.stderr, forced.stderr


def test_a_running_tuned_that_retunes_a_knob_refuses_the_run(fleet_inventory, administered, tmp_path):
    before = ns_read("h1", SOMAXCONN)
    pid = (FLEET.dir / "h1" / "sshd.pid").read_text().strip()
    daemon = subprocess.Popen(
        ["nsenter", "--target", pid, "--net", "--uts", "--mount", "--", "unshare", "--mount", "--propagation",
         "private", "--", "sh", "-c", "mkdir -p /run/tuned && mount -t tmpfs tf-tuned /run/tuned && exec tuned "
         f"--no-dbus --no-socket --profile {PROFILE} --log {tmp_path}/tuned.log --pid /run/tuned/tuned.pid"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "static tuning from profile" not in ((tmp_path / "tuned.log").read_text()
                                                   if (tmp_path / "tuned.log").exists() else ""):
            assert daemon.poll() is None and time.monotonic() < deadline, "tuned did not start"
            time.sleep(0.1)
        # TuneD set 3000, then applied h1's sysctl files again: the file the scan named wins
        assert ns_read("h1", SOMAXCONN) == "2000"
        p = cli("run", "--spec", str(administered), "--hosts", str(fleet_inventory), "--limit", "h1", "--dry-run")
        assert p.returncode == 2, p.stderr
        line = p.stderr.strip().splitlines()[-1]
        assert line.startswith("tunefleet: error: h1: tuned (pid ") and line.endswith(
            f") retunes {SOMAXCONN}: stop it for the run (systemctl stop tuned (or tuned-adm off)) or leave that "
            "knob out of the spec"), line
        other = cli("run", "--spec", str(administered), "--hosts", str(fleet_inventory), "--limit", "h2", "--dry-run")
        assert other.returncode == 0, other.stderr  # a daemon in h1's namespace tunes h1, not h2
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(30)
    assert ns_read("h1", SOMAXCONN) == before  # TuneD rolled its change back when it stopped
