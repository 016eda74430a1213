"""Shared test fixtures: the local fleet (real sshd hosts in network namespaces) and a local
network namespace for driving the agent without SSH."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class TestFleet:
    """Which local fleet the tests use: the default one, or the named fleet TUNEFLEET_TEST_FLEET=x
    (FLEET_NAME=x deploy/fleet-up.sh: inventory/local-x.yml, deploy/.fleet-x, namespaces tfx-hN),
    so tests can run beside a default fleet that someone else is using. Everything that names a
    fleet path, namespace or script environment asks here."""

    def __init__(self, name: str = ""):
        self.name = name
        self.inventory = ROOT / "inventory" / (f"local-{name}.yml" if name else "local.yml")
        self.dir = ROOT / "deploy" / (f".fleet-{name}" if name else ".fleet")
        self.prefix = f"tf{name}"

    def ns(self, host: str) -> str:
        """The network namespace of a fleet host (h1 -> tf-h1, or tfx-h1 for fleet x)."""
        return f"{self.prefix}-{host}"

    def env(self) -> dict[str, str]:
        """The environment for deploy/fleet-*.sh acting on this fleet (fleet-reboot.sh, ...)."""
        env = {k: v for k, v in os.environ.items() if k != "FLEET_NAME"}
        return {**env, "FLEET_NAME": self.name} if self.name else env


FLEET = TestFleet(os.environ.get("TUNEFLEET_TEST_FLEET", ""))
LOCAL_INVENTORY = FLEET.inventory


@pytest.fixture(autouse=True)
def _private_policy_store(tmp_path_factory, monkeypatch):
    """Every test (and every tunefleet it starts) gets an empty policy store of its own: a PPO run
    would otherwise start from a policy an earlier test left in ~/.local/share/tunefleet."""
    monkeypatch.setenv("TUNEFLEET_POLICY_STORE", str(tmp_path_factory.mktemp("policies")))
    monkeypatch.setenv("TUNEFLEET_HISTORY", str(tmp_path_factory.mktemp("history") / "runs.jsonl"))


def _need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, sysctl writes)")


@pytest.fixture(scope="session")
def fleet_inventory() -> Path:
    """inventory/local.yml of a running local fleet (`make fleet-up`; TUNEFLEET_TEST_FLEET=x: the
    named fleet's inventory/local-x.yml). Under CI a missing fleet fails."""
    _need_root()
    if not LOCAL_INVENTORY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"the local fleet is not up ({LOCAL_INVENTORY.name}): run deploy/fleet-up.sh (make test does)")
        pytest.skip(f"the local fleet is not up ({LOCAL_INVENTORY.name}): run `make fleet-up`")
    return LOCAL_INVENTORY


@pytest.fixture(scope="session")
def inventory(fleet_inventory):
    from controller.fleet.inventory import load_inventory

    return load_inventory(fleet_inventory)


@pytest.fixture()
def netns():
    """A throwaway network namespace of our own: per-namespace knobs written there touch nothing else."""
    _need_root()
    name = f"tf-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture()
def local_transport(netns, tmp_path):
    """The local transport: the agent runs as a subprocess inside `netns`, HOME in a temp folder."""
    from controller.fleet.transport import LocalTransport

    env = {"HOME": str(tmp_path), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    return LocalTransport("local", env=env, wrap=["ip", "netns", "exec", netns])


@pytest.fixture()
def ssh_transport(inventory):
    """An SSH connection to host h1 of the local fleet; its agent state folder is emptied first."""
    from controller.fleet.transport import SSHTransport

    t = SSHTransport(inventory.hosts["h1"])
    t.run('rm -rf "$HOME/.tunefleet"/* "$HOME/.tunefleet"/.[!.]*')
    yield t
    t.close()


@pytest.fixture(params=["local", "ssh"])
def transport(request):
    """The same contract, over a local subprocess and over SSH."""
    return request.getfixturevalue(f"{request.param}_transport")


KERNEL_WIDE_LOCK = Path("/run/lock/tunefleet-kernel-wide.lock")


@pytest.fixture()
def kernel_wide():
    """Held by every test that writes a kernel-wide knob (vm.*, kernel.*): one machine-wide lock, so
    no two such tests overlap, in this run or in another test run on the same machine."""
    import fcntl

    KERNEL_WIDE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(KERNEL_WIDE_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def which(tool: str) -> bool:
    return shutil.which(tool) is not None
