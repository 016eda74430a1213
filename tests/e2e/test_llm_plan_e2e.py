"""The LLM strategist against the local fleet: the scripted model inspects the real hosts, lists
the knobs they really have, and its spec is validated against them. A model that insists on a
destructive benchmark never gets anything run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LOCAL_INVENTORY
from tests.fake_llm import FakeLLM, call, optimize, reply

pytestmark = pytest.mark.fleet

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = LOCAL_INVENTORY
KEY = "sk-e2e-7fQp2LzX9vB3kW8mT5rY"
GOAL = "optimize this system for a PostgreSQL database"

if not INVENTORY.exists():
    pytest.skip("the local fleet is not up (inventory/local.yml): run `make fleet-up`", allow_module_level=True)


def tunefleet(args, fake: FakeLLM, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNEFLEET_"))}
    env.update({"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": KEY, "XDG_CONFIG_HOME": str(tmp_path)})
    return subprocess.run([sys.executable, "-c", "from controller.cli import main; main()", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def design(request: dict) -> dict:
    """The scripted model's spec, from what inspect_hosts and list_tunables really answered."""
    results = [m["content"] for m in request["messages"] if m.get("role") == "tool"]
    hosts = json.loads(results[0])["hosts"]
    tunables = {t["name"] for t in json.loads(results[1])["tunables"]}
    shared = any(h["shares_kernel_with"] for h in hosts)
    postgres = all("pgbench" in h["tools_installed"] and "postgresql" in h["services_running"] for h in hosts)
    if postgres:
        command, metric = "pgbench -h 127.0.0.1 -U postgres -C -c 8 -j 2 -T 5 pgbench", "transactions_per_second"
    else:
        command, metric = "tunefleet-bench accept-storm --clients 128", "elapsed_ms"
    knobs = [{"param": "net.ipv4.tcp_max_syn_backlog", "min": 16, "max": 4096, "rationale": "SYN queue for bursts"},
             {"param": "net.ipv4.tcp_fin_timeout", "min": 5, "max": 60,
              "rationale": "FIN_WAIT_2 of closed connections"}]
    if not shared and "vm.swappiness" in tunables:
        knobs.append({"param": "vm.swappiness", "min": 0, "max": 60, "rationale": "keep backends in memory"})
    return reply(optimize({"workload_name": "PostgreSQL connections", "benchmark_command": command,
                           "reward_metric": metric, "benchmark_timeout": 60, "action_space": knobs}))


def test_plan_with_the_model_against_the_local_fleet(tmp_path):
    kernel_wide = {"workload_name": "PostgreSQL", "benchmark_command": "tunefleet-bench accept-storm",
                   "reward_metric": "elapsed_ms",
                   "action_space": [{"param": "vm.dirty_ratio", "min": 5, "max": 60, "rationale": "writeback"},
                                    {"param": "net.ipv4.tcp_turbo", "min": 0, "max": 1, "rationale": "made up"}]}
    script = [reply(call("inspect_hosts", {})), reply(call("list_tunables", {})), reply(optimize(kernel_wide)),
              design]
    # `design` reads the two tool results of the conversation it is sent; keep them first
    with FakeLLM(script) as fake:
        proc = tunefleet(["plan", GOAL, "--hosts", str(INVENTORY), "--model", "fake-model"], fake, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert fake.count == 4
    feedback = fake.tool_results(-1)[2]
    assert "net.ipv4.tcp_turbo: no such tunable" in feedback
    hosts = json.loads(fake.tool_results(-1)[0])["hosts"]
    assert hosts and all(h["kernel"] for h in hosts)
    assert "net.ipv4.tcp_max_syn_backlog" in proc.stdout and "SYN queue for bursts" in proc.stdout
    assert KEY not in proc.stdout + proc.stderr


def test_a_destructive_benchmark_never_reaches_a_host(tmp_path):
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("still here")
    destructive = {"workload_name": "PostgreSQL", "benchmark_command": f"rm -rf {sentinel}",
                   "reward_metric": "elapsed_ms",
                   "action_space": [{"param": "net.core.somaxconn", "min": 16, "max": 4096, "rationale": "x"}]}
    run_dir = tmp_path / "run"
    with FakeLLM([reply(optimize(destructive))], repeat_last=True) as fake:
        proc = tunefleet(["run", GOAL, "--hosts", str(INVENTORY), "--yes", "--model", "fake-model",
                          "--run-dir", str(run_dir)], fake, tmp_path)
    assert proc.returncode == 1
    assert fake.count == 3
    assert "failed validation 3 times" in proc.stderr
    assert sentinel.read_text() == "still here"
    assert not run_dir.exists()
