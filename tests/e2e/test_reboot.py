"""A host that reboots in the middle of a run: its agent is lost, the controller reconnects to it in
the background, sees another boot_id, and either lets it back in (its boot put the knobs back on
the run's originals) or leaves it out (they are elsewhere: its baseline no longer holds). Either
way the result says so for that host, the other hosts never wait on it, the journal its old agent
left behind is discarded rather than written over the new boot's values, and no host is left
changed.

How h2 reboots, and why that is honest (deploy/fleet-reboot.sh): a hard reset, as a power cut or a
hypervisor reset does it. Every process of the host dies at once with SIGKILL (the agent gets no
chance to restore anything; its journal is on the host's "disk"). The host's network namespace is
deleted and made again, so the kernel itself puts every per-namespace knob back at its default:
the reset of the values is real, not written by the test. The host's state folders are kept, as a
disk keeps them, and it boots as fleet-up made it: sshd, PostgreSQL (which recovers from the
crash), and the fleet's boot configuration (somaxconn 128) unless --kernel-defaults leaves the
kernel's 4096. The one thing a namespace cannot really change is the boot_id, which belongs to the
kernel all fleet hosts share: --new-boot-id bind-mounts a new one over
/proc/sys/kernel/random/boot_id inside the host, the way container runtimes present per-container
/proc files. The agent reads the path it reads in production; neither it nor the controller has
a hook for tests. At the end h2 is rebooted once more without either flag: back on the machine's
boot_id (shared with h1 and h3 again) and the fleet's boot configuration, exactly as fleet-up
made it.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FLEET, ROOT
from tests.e2e.test_tuning import STORM, TUNEFLEET, knob_values

REBOOT = ROOT / "deploy" / "fleet-reboot.sh"
SOMAXCONN = "net.core.somaxconn"


def reboot(*flags: str) -> None:
    p = subprocess.run([str(REBOOT), "h2", *flags], capture_output=True, text=True, timeout=90, env=FLEET.env())
    assert p.returncode == 0, p.stderr


def boot_id() -> str:
    """h2's boot_id as its own processes see it (inside the mount namespace of its sshd)."""
    pid = (FLEET.dir / "h2" / "sshd.pid").read_text().strip()
    return subprocess.run(["nsenter", "--target", pid, "--mount", "cat", "/proc/sys/kernel/random/boot_id"],
                          capture_output=True, text=True, check=True).stdout.strip()


def h2_journal_exists() -> bool:
    pid = (FLEET.dir / "h2" / "sshd.pid").read_text().strip()
    test = ["nsenter", "--target", pid, "--mount", "test", "-e", "/root/.tunefleet/journal.json"]
    return subprocess.run(test).returncode == 0


@pytest.fixture()
def fleet_as_made(inventory):
    """The fleet's values before the test; afterwards h2 is rebooted back as fleet-up made it."""
    machine = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert boot_id() == machine
    before = knob_values(inventory)
    yield before
    reboot()
    assert boot_id() == machine
    assert knob_values(inventory) == before


def run_with_a_reboot(fleet_inventory, tmp_path, before, *flags: str, json_out: bool = True, event=None):
    """A real `tunefleet run` on h1..h3; h2 reboots (or `event(run_dir)` happens) as soon as the
    search has changed it. Returns (stdout, stderr, when h2 was up again, the run folder)."""
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps(STORM))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--spec", str(spec), "--yes",
                             "--strategy", "random", "--seed", "3", "--budget", "45", "--verify-repeats", "2",
                             "--confirm-top", "0", "--run-dir", str(run_dir), *(["--json"] if json_out else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while knob_values_h2() == before["h2"][SOMAXCONN]:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "h2 was not searched within 90 s"
            time.sleep(0.1)
        event(run_dir) if event else reboot(*flags)
        up = time.time()  # an evaluation that finished while the reset was under way is older
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    return out, err, up, run_dir


def knob_values_h2() -> str:
    return subprocess.run(["ip", "netns", "exec", FLEET.ns("h2"), "cat", "/proc/sys/net/core/somaxconn"],
                          capture_output=True, text=True, check=True).stdout.strip()


def h2_trials_after(run_dir: Path, when: float) -> list[dict]:
    trials = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
    return [t for t in trials if t["host"] == "h2" and t["error"] is None and t["time"] > when]


def test_a_host_rebooted_onto_other_values_is_left_out_and_its_old_journal_is_not_replayed(
        fleet_inventory, inventory, tmp_path, fleet_as_made):
    """h2's 128 was the fleet's boot configuration; this boot leaves the kernel's 4096 instead (a
    host whose 128 had been set by hand). The run finishes on h1 and h3 and says why h2 is out."""
    before = fleet_as_made
    out, err, up, run_dir = run_with_a_reboot(fleet_inventory, tmp_path, before,
                                                "--new-boot-id", "--kernel-defaults")
    result = json.loads(out)
    why = result["dropped"]["h2"]
    assert why.startswith("rebooted (boot_id "), why
    assert "its journal of the earlier boot discarded unreplayed (1 knob(s))" in why, why
    assert f"{SOMAXCONN} = 4096, {before['h2'][SOMAXCONN]} at the run's start" in why, why
    assert why.endswith("left out of the rest of the run"), why
    assert result["rejoined"] == {} and result["hosts"]["h2"]["dropped"] == why
    assert "verification" not in result["hosts"]["h2"] and result["verification"] is not None
    assert h2_trials_after(run_dir, up) == []
    assert "(dropped: rebooted (boot_id " in (run_dir / "report.html").read_text()
    # the old boot's journal (somaxconn 128) was discarded, not written over the new boot's 4096
    assert not h2_journal_exists()
    after = knob_values(inventory)
    assert after["h2"] == {**before["h2"], SOMAXCONN: "4096"}
    assert {h: v for h, v in after.items() if h != "h2"} == {h: v for h, v in before.items() if h != "h2"}
    print(f"h2 dropped {json.loads((run_dir / 'result.json').read_text())['dropped']['h2']!r}")


def test_a_host_rebooted_onto_its_originals_rejoins_the_run(fleet_inventory, inventory, tmp_path, fleet_as_made):
    """The fleet's boot configuration brings h2 back on 128, the value its baseline was measured on:
    h2 rejoins, is searched and verified on again, and its new agent restores it at the end."""
    before = fleet_as_made
    out, err, up, run_dir = run_with_a_reboot(fleet_inventory, tmp_path, before, "--new-boot-id", json_out=False)
    result = json.loads((run_dir / "result.json").read_text())
    how = result["rejoined"]["h2"]
    assert how.startswith("rebooted (boot_id ") and how.endswith("values back on the run's originals; rejoined"), how
    assert "h2" not in result["dropped"] and result["hosts"]["h2"]["rejoined"] == how
    assert f"rejoined h2: {how}" in " ".join(out.split())  # the text report says it too
    assert h2_trials_after(run_dir, up), "h2 was not evaluated after it rejoined"
    assert "verification" in result["hosts"]["h2"]
    assert "(rejoined: rebooted (boot_id " in (run_dir / "report.html").read_text()
    trials = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
    lost = next(t for t in trials if t["host"] == "h2" and (t["error"] or "").startswith("agent lost"))
    back = next(t for t in trials if t["host"] == "h2" and t["error"] is None and t["time"] > lost["time"])
    print(f"h2 evaluated again {back['time'] - back['duration_s'] - lost['time']:.1f} s after its agent was lost")
    assert boot_id() != Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert not h2_journal_exists()
    assert knob_values(inventory) == before


def test_an_agent_killed_mid_run_is_reconnected_on_the_same_boot_and_rejoins(fleet_inventory, inventory, tmp_path):
    """No reboot: h2's agent dies (SIGKILL, so nobody restores). The new agent finds its journal of
    this boot and restores it at start; the boot_id is the run's, the values the originals: h2 rejoins."""
    import os
    import signal

    before = knob_values(inventory)

    def kill_agent(run_dir):
        os.kill(json.loads((run_dir / "hosts.json").read_text())["h2"]["facts"]["pid"], signal.SIGKILL)

    out, err, up, run_dir = run_with_a_reboot(fleet_inventory, tmp_path, before, event=kill_agent)
    result = json.loads(out)
    how = result["rejoined"]["h2"]
    # killed while a 'run' was out, its output ends; killed between two, the next send finds the channel closed
    assert how.startswith(("agent lost (agent exited during 'run'", "agent lost (cannot send to the agent")), how
    assert how.endswith("), same boot, 1 knob(s) restored from its journal, values back on the run's originals; "
                        "rejoined"), how
    assert "h2" not in result["dropped"] and h2_trials_after(run_dir, up)
    assert knob_values(inventory) == before


def test_restore_after_a_reboot_names_the_kept_journal_it_discarded(fleet_inventory, inventory, fleet_as_made):
    """--keep-best leaves values applied until a reboot: after one, the kept journal holds another
    boot's originals. `tunefleet restore` writes none of them and says the kept value is gone."""
    from controller.fleet.fleet import start_agent
    from controller.fleet.transport import SSHTransport

    before = fleet_as_made
    transport = SSHTransport(inventory.hosts["h2"])
    try:
        host = start_agent("h2", transport, sudo=False)
        assert host.request("apply", {"values": {SOMAXCONN: "1999"}})["applied"] == {SOMAXCONN: "1999"}
        assert host.agent.close(keep=True)["kept"] == [SOMAXCONN]
    finally:
        transport.close()
    assert knob_values_h2() == "1999"
    reboot("--new-boot-id")
    assert knob_values_h2() == before["h2"][SOMAXCONN]
    p = subprocess.run([*TUNEFLEET, "restore", "--hosts", str(fleet_inventory), "--limit", "h2"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    earlier = Path("/proc/sys/kernel/random/boot_id").read_text()[:8]
    assert (f"h2: {SOMAXCONN}: the kept value 1999 is gone: the host rebooted since {earlier}… and it is now "
            f"{before['h2'][SOMAXCONN]} (original {before['h2'][SOMAXCONN]}); nothing written") in p.stdout, p.stdout
    assert knob_values(inventory) == before
