"""The user's own benchmark on the local fleet: a script they wrote, named in a spec they wrote.

tests/fixtures/userbench/loadtest.py opens a burst of 200 connections to a local listener that is
busy until all are sent. The fleet's hosts start at net.core.somaxconn = 128, so part of the burst
waits for a SYN retransmit (about a second); a larger accept queue serves it in milliseconds. The
hosts see this machine's filesystem (only their ~/.tunefleet is private), so the test's tmp folder
holds the scripts every host runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_tuning import knob_values

pytestmark = pytest.mark.fleet

TUNEFLEET = [sys.executable, "-m", "controller.cli"]
USERBENCH = Path(__file__).resolve().parents[1] / "fixtures" / "userbench"
ACCEPTED = r"connections accepted in ([0-9.]+) ms"


def run_cli(*args, timeout=600, **kw):
    return subprocess.run([*TUNEFLEET, *args], capture_output=True, text=True, timeout=timeout, **kw)


def user_spec(tmp_path: Path, command, cwd: str | None = None) -> Path:
    spec = {"workload_name": "my connection burst", "reward_metric": "accept_ms", "reward_pattern": ACCEPTED,
            "reward_goal": "minimize", "benchmark_command": command, "benchmark_timeout": 60,
            "baseline_repeats": 2,
            # below ~100 a burst of 200 waits through several retransmits: keep the test short
            "action_space": [{"param": "net.core.somaxconn", "min": 100, "max": 4096}]}
    if cwd:
        spec["benchmark_cwd"] = cwd
    path = tmp_path / "my.yml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


@pytest.fixture()
def scripts(tmp_path) -> Path:
    folder = tmp_path / "bench"
    shutil.copytree(USERBENCH, folder)
    return folder


def check_run(fleet_inventory, inventory, spec: Path, run_dir: Path, argv: list[str]) -> dict:
    before = knob_values(inventory)
    assert {v["net.core.somaxconn"] for v in before.values()} == {"128"}, "fleet-up sets somaxconn 128"
    p = run_cli("run", "--spec", str(spec), "--hosts", str(fleet_inventory), "--yes", "--budget", "6",
                "--strategy", "random", "--verify-repeats", "2", "--confirm-top", "1", "--run-dir", str(run_dir))
    assert p.returncode == 0, p.stderr[-3000:]
    # shown before it ran, exactly as the agents exec it
    assert f"argv: {json.dumps(argv)} (exec, no shell" in p.stderr and f"written by you, in {spec}" in p.stderr
    # recorded in the run folder, with who wrote it
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["benchmark"]["argv"] == argv and plan["benchmark"]["origin"] == "user"
    assert plan["benchmark"]["shell"] is False
    assert json.loads((run_dir / "spec.json").read_text())["benchmark_command"] == json.loads(spec.read_text())[
        "benchmark_command"]
    trials = [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]
    baseline = [t for t in trials if t["phase"] == "baseline"]
    assert len(baseline) == 2 * 3 and all(t["error"] is None and t["raw"] > 0 for t in baseline), baseline
    assert knob_values(inventory) == before, "every host restored"
    return json.loads((run_dir / "result.json").read_text())


def test_a_python_script_the_user_wrote_runs_on_every_host(fleet_inventory, inventory, scripts, tmp_path):
    argv = ["python3", str(scripts / "loadtest.py"), "--clients", "200"]
    spec = user_spec(tmp_path, " ".join(argv))
    result = check_run(fleet_inventory, inventory, spec, tmp_path / "run", argv)
    baselines = [h["baseline"]["median"] for h in result["hosts"].values()]
    assert min(baselines) > 500, f"somaxconn 128 under a burst of 200 pays a SYN retransmit: {baselines}"
    print("python3 loadtest.py:", result["verdict"], {n: h["baseline"]["median"] for n, h in result["hosts"].items()})


def test_a_shell_script_named_relative_to_benchmark_cwd(fleet_inventory, inventory, scripts, tmp_path):
    spec = user_spec(tmp_path, "./bench.sh", cwd=str(scripts))
    result = check_run(fleet_inventory, inventory, spec, tmp_path / "run", ["./bench.sh"])
    assert result["evaluations"] == 6
    print("./bench.sh:", result["verdict"], {n: h["baseline"]["median"] for n, h in result["hosts"].items()})


def test_shell_syntax_is_refused_with_the_script_hint(fleet_inventory, inventory, scripts, tmp_path):
    before = knob_values(inventory)
    spec = user_spec(tmp_path, f"python3 {scripts / 'loadtest.py'} | tail -n 1")
    p = run_cli("run", "--spec", str(spec), "--hosts", str(fleet_inventory), "--yes", "--budget", "6")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunefleet: error: ")
    assert "| (a pipe)" in lines[0] and "put the commands in a script and name the script" in lines[0]
    assert knob_values(inventory) == before


def test_a_model_proposing_a_python_script_is_still_refused(fleet_inventory, inventory, scripts, tmp_path):
    import os

    from tests.fake_llm import FakeLLM, optimize, reply

    proposal = json.loads(user_spec(tmp_path, f"python3 {scripts / 'loadtest.py'}").read_text())
    proposal["action_space"][0]["rationale"] = "the burst overflows the accept queue"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNEFLEET_"))}
    before = knob_values(inventory)
    with FakeLLM([reply(optimize(proposal))], repeat_last=True) as fake:
        env.update({"OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test", "TUNEFLEET_MODEL": "fake-model",
                    "XDG_CONFIG_HOME": str(tmp_path)})
        p = run_cli("run", "make new connections faster", "--hosts", str(fleet_inventory), "--yes",
                    "--run-dir", str(tmp_path / "run"), env=env)
    assert p.returncode != 0
    assert fake.count == 3  # asked again each time, then given up
    assert "runs `python3`, which is not a benchmark tool" in p.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists() and knob_values(inventory) == before
