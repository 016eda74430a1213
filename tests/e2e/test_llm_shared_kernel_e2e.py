"""The LLM strategist plans within the local fleet's facts: its hosts share one kernel.

The scripted model is told so in the task (from the hosts' real boot_ids), and when it still
names a kernel-wide knob, the knob is left out with a note instead of the plan being refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_llm import FakeLLM, optimize, reply

pytestmark = pytest.mark.fleet

ROOT = Path(__file__).resolve().parents[2]
GOAL = "optimize this system for a PostgreSQL database"
ANSWER = {"workload_name": "PostgreSQL connections", "reward_metric": "transactions_per_second",
          "benchmark_command": "pgbench -h 127.0.0.1 -U pgbench -C -c 8 -j 2 -T 5 pgbench", "benchmark_timeout": 60,
          "action_space": [{"param": "net.ipv4.tcp_max_syn_backlog", "min": 128, "max": 4096,
                            "rationale": "connection bursts"},
                           {"param": "vm.swappiness", "min": 0, "max": 60, "rationale": "keep backends in memory"}]}


def test_a_kernel_wide_knob_from_the_model_is_left_out_on_the_local_fleet(fleet_inventory, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNEFLEET_"))}
    with FakeLLM([reply(optimize(ANSWER))], repeat_last=True) as fake:
        env.update({"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test", "XDG_CONFIG_HOME": str(tmp_path),
                    "COLUMNS": "200"})
        cmd = [sys.executable, "-m", "controller.cli", "plan", GOAL, "--hosts", str(fleet_inventory),
               "--model", "fake-model"]
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        as_json = subprocess.run(cmd + ["--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert fake.count == 2  # one request per plan: accepted without a second round
    task = fake.requests[0]["messages"][1]["content"]
    assert "h1, h2, h3 share one kernel" in task and "vm.swappiness" in task
    assert "note: left out vm.swappiness: kernel-wide, and h1, h2, h3 share one kernel" in p.stdout
    record = json.loads(as_json.stdout)
    assert [k["param"] for k in record["spec"]["action_space"]] == ["net.ipv4.tcp_max_syn_backlog"]
    assert list(record["left_out"]) == ["vm.swappiness"] and record["benchmark"]["origin"] == "model"
