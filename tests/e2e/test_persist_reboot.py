"""Persisted settings across real reboots of the local fleet (deploy/fleet-reboot.sh: every process
killed, the network namespace made anew, so the kernel puts every per-namespace knob back at its
default; then the host boots applying its own /etc/sysctl.d with the real `sysctl --system`).

After `run --persist` a reboot brings the verified winner back on every host (read back from each);
`restore --unpersist` after that reboot deletes the drop-in and puts the originals back at once,
not only at the next boot; after one more reboot every host holds its originals. A value kept with
--keep-best has no drop-in: after a reboot `restore` says it is gone.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import FLEET, ROOT
from tests.e2e.test_drift import SOMAXCONN, ns_read
from tests.e2e.test_tuning import STORM, TUNEFLEET

REBOOT = ROOT / "deploy" / "fleet-reboot.sh"
DROP_IN = "/etc/sysctl.d/90-tunefleet.conf"
HOSTS = ("h1", "h2", "h3")


def reboot(host: str, *flags: str) -> None:
    p = subprocess.run([str(REBOOT), host, *flags], capture_output=True, text=True, timeout=90, env=FLEET.env())
    assert p.returncode == 0, p.stderr


def drop_in(host: str):
    return FLEET.dir / host / "etc" / "sysctl.d" / DROP_IN.rsplit("/", 1)[1]


@pytest.fixture()
def rebootable(fleet_inventory):
    """The hosts as fleet-up made them before and after (no drop-in left, the machine's boot_id)."""
    if not (FLEET.dir / "h1" / "etc" / "sysctl.d").is_dir():
        pytest.skip("this fleet's hosts have no sysctl configuration of their own to boot from")
    before = {h: ns_read(h, SOMAXCONN) for h in HOSTS}
    yield before
    for h in HOSTS:
        drop_in(h).unlink(missing_ok=True)
        reboot(h)
    assert {h: ns_read(h, SOMAXCONN) for h in HOSTS} == before


def test_a_persisted_winner_comes_back_after_a_reboot_and_unpersist_brings_the_originals_back(
        fleet_inventory, tmp_path, rebootable):
    before = rebootable
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps(STORM))
    p = subprocess.run([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--spec", str(spec), "--yes", "--json",
                        "--strategy", "random", "--seed", "2", "--budget", "12", "--verify-repeats", "3",
                        "--confirm-top", "0", "--persist", "--run-dir", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout)
    assert result["success"], result["verdict"]
    best = result["best_config"][SOMAXCONN]
    assert result["persisted"] == {h: DROP_IN for h in HOSTS}
    for h in HOSTS:
        text = drop_in(h).read_text()
        assert f"{SOMAXCONN} = {best}\n" in text and f"# before tunefleet: {SOMAXCONN} = {before[h]}\n" in text

    for h in HOSTS:
        reboot(h, "--new-boot-id")
    back = {h: ns_read(h, SOMAXCONN) for h in HOSTS}
    assert back == {h: best for h in HOSTS}, back  # 3/3: the boot applied the drop-in

    r = subprocess.run([*TUNEFLEET, "restore", "--hosts", str(fleet_inventory), "--unpersist", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["removed"] == {h: DROP_IN for h in HOSTS}
    assert report["restored"] == {h: {SOMAXCONN: before[h]} for h in HOSTS}
    assert {h: ns_read(h, SOMAXCONN) for h in HOSTS} == before  # at once, not at the next boot
    assert not any(drop_in(h).exists() for h in HOSTS)

    for h in HOSTS:
        reboot(h, "--new-boot-id")
    assert {h: ns_read(h, SOMAXCONN) for h in HOSTS} == before  # 3/3 on their originals after a reboot
    print(f"persisted {SOMAXCONN} = {best}: back after a reboot on {sum(v == best for v in back.values())}/3 hosts; "
          f"originals after --unpersist and a reboot on 3/3")


def test_a_kept_value_is_reported_gone_after_a_reboot(fleet_inventory, inventory, rebootable):
    from controller.fleet.fleet import start_agent
    from controller.fleet.transport import SSHTransport

    before = rebootable
    transport = SSHTransport(inventory.hosts["h2"])
    try:
        host = start_agent("h2", transport, sudo=False)
        host.request("apply", {"values": {SOMAXCONN: "1999"}})
        host.agent.close(keep=True)
    finally:
        transport.close()
    reboot("h2", "--new-boot-id")
    p = subprocess.run([*TUNEFLEET, "restore", "--hosts", str(fleet_inventory), "--limit", "h2"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (f"h2: {SOMAXCONN}: the kept value 1999 is gone: the host rebooted since ") in p.stdout, p.stdout
    assert f"and it is now {before['h2']} (original {before['h2']}); nothing written" in p.stdout, p.stdout
    again = subprocess.run([*TUNEFLEET, "restore", "--hosts", str(fleet_inventory), "--limit", "h2"],
                           capture_output=True, text=True, timeout=60)
    assert "nothing to restore" in again.stdout  # said once, then the record is gone
