"""ansible_become_user other than root is refused before any connection: the agent must be root
to write /proc/sys, and running it as another user would fail every write instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_become_user_other_than_root_is_refused_in_one_line(tmp_path: Path):
    inv = tmp_path / "hosts.ini"
    # 192.0.2.0/24 is TEST-NET-1: nothing is ever contacted, the refusal comes first.
    inv.write_text("[db]\ndb1 ansible_host=192.0.2.10 ansible_user=tuner ansible_become_user=postgres\n"
                   "db2 ansible_host=192.0.2.11 ansible_user=tuner ansible_become_user=root\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TUNEFLEET_INVENTORY_READER": "builtin"}
    p = subprocess.run([sys.executable, "-m", "controller.cli", "check", "--hosts", str(inv), "--limit", "db1",
                        "--connect-timeout", "0.5"], capture_output=True, text=True, env=env, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 1
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "become_user is 'postgres'" in lines[0], p.stderr
    assert "Traceback" not in p.stderr
