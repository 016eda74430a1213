"""Exports loaded by the real tools: `sysctl -p` reads the drop-in, `sh` runs the script,
`ansible-playbook` checks and runs the playbook (ansible.posix.sysctl, connection local), each
inside a network namespace of its own, where the per-namespace knobs they set touch nothing else.
And a real run on the local fleet: report.html, `runs`, `show` and `export` of what it found."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FLEET

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "run_folders"
TUNEFLEET = [sys.executable, "-m", "controller.cli"]
BIN = Path(sys.executable).parent
# tcp_rmem/tcp_wmem: vectors, per network namespace; the run found no significant change, so --force
VECTORS = FIXTURES / "stream-no-significant"
WANT = {"net.ipv4.tcp_rmem": "4096 12070 91463", "net.ipv4.tcp_wmem": "4096 40646 69851"}
try:
    import tensorboard  # noqa: F401
    TENSORBOARD = True
except ImportError:
    TENSORBOARD = False


def export(run: Path, fmt: str, out: Path, *extra: str) -> Path:
    p = subprocess.run([*TUNEFLEET, "export", str(run), "--format", fmt, "--output", str(out), *extra],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return out


def in_ns(ns: str, *argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=120, **kw)


def read(ns: str, knobs) -> dict[str, str]:
    return {k: " ".join(in_ns(ns, "cat", "/proc/sys/" + k.replace(".", "/")).stdout.split()) for k in knobs}


def test_sysctl_p_loads_the_drop_in(netns, tmp_path):
    before = read(netns, WANT)
    assert before != WANT
    conf = export(VECTORS, "sysctl.d", tmp_path / "90-tunefleet.conf", "--force")
    p = in_ns(netns, "sysctl", "-p", str(conf))
    assert p.returncode == 0, p.stderr
    assert read(netns, WANT) == WANT


def test_shell_script_runs_and_sets_vector_values(netns, tmp_path):
    script = export(VECTORS, "shell", tmp_path / "apply.sh", "--force")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    p = in_ns(netns, str(script))
    assert p.returncode == 0, p.stderr
    assert read(netns, WANT) == WANT


@pytest.mark.skipif(shutil.which("ansible-playbook", path=str(BIN)) is None, reason="needs ansible (the test extra)")
def test_ansible_playbook_passes_syntax_check_and_sets_the_values(netns, tmp_path):
    playbook = export(VECTORS, "ansible", tmp_path / "tunefleet.yml", "--force")
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible"), "ANSIBLE_NOCOLOR": "1"}
    check = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(playbook)],
                           capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    drop_in = tmp_path / "sysctl.d" / "90-tunefleet.conf"
    drop_in.parent.mkdir()
    p = in_ns(netns, str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
              "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"tunefleet_sysctl_file={drop_in}",
              str(playbook), env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert read(netns, WANT) == WANT
    assert {line.split("=")[0] for line in drop_in.read_text().splitlines()} == set(WANT)


def test_a_real_run_reports_lists_shows_and_exports(fleet_inventory, inventory, tmp_path):
    """run -> report.html and a last line naming it, TensorBoard scalars of the search; runs and show
    read the folder back; the export of its verified result loads with sysctl -p."""
    spec = tmp_path / "storm.json"
    spec.write_text(json.dumps({
        "workload_name": "connection storm", "reward_metric": "elapsed_ms", "reward_goal": "minimize",
        "benchmark_command": "tunefleet-bench accept-storm --clients 256", "benchmark_timeout": 30,
        "baseline_repeats": 2, "action_space": [{"param": "net.core.somaxconn", "min": 512, "max": 4096}],
        "state_space": [{"metric": "tcp_listen_overflows"}], "training_config": {}}))
    runs = tmp_path / "runs"
    env = {**os.environ, "TUNEFLEET_RUNS": str(runs)}
    p = subprocess.run([*TUNEFLEET, "run", "--hosts", str(fleet_inventory), "--spec", str(spec), "--yes",
                        "--strategy", "random", "--budget", "3", "--verify-repeats", "4", "--confirm-top", "1",
                        *(["--tensorboard"] if TENSORBOARD else [])],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr
    (folder,) = runs.iterdir()
    page = folder / "report.html"
    assert page.is_file() and p.stdout.strip().splitlines()[-1] == f"report: {page}"
    if TENSORBOARD:  # read back with tensorboard's own reader
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(folder / "tensorboard" / "search")).Reload()
        tags = events.Tags()["scalars"]
        assert "change_pct/fleet_best_so_far" in tags and {"raw/h1", "raw/h2", "raw/h3"} <= set(tags)
        assert [e.step for e in events.Scalars("change_pct/fleet_best_so_far")] == [1, 2, 3]

    listed = json.loads(subprocess.run([*TUNEFLEET, "runs", "--json"], capture_output=True, text=True,
                                       env=env, check=True).stdout)
    assert [r["run"] for r in listed] == [str(folder)] and listed[0]["success"] and listed[0]["budget"] == 3
    shown = subprocess.run([*TUNEFLEET, "show", folder.name], capture_output=True, text=True, env=env, check=True)
    assert shown.stdout.strip() and shown.stdout.strip() in p.stdout  # as `run` printed it

    conf = export(folder, "sysctl.d", tmp_path / "90-tunefleet.conf")
    best = json.loads((folder / "result.json").read_text())["best_config"]["net.core.somaxconn"]
    original = read(FLEET.ns("h1"), ["net.core.somaxconn"])
    try:
        assert in_ns(FLEET.ns("h1"), "sysctl", "-p", str(conf)).returncode == 0
        assert read(FLEET.ns("h1"), ["net.core.somaxconn"]) == {"net.core.somaxconn": best}
    finally:
        in_ns(FLEET.ns("h1"), "sysctl", "-w", f"net.core.somaxconn={original['net.core.somaxconn']}")
    assert read(FLEET.ns("h1"), ["net.core.somaxconn"]) == original


def test_tensorboard_missing_is_one_line_before_any_host_is_touched(tmp_path):
    """Without the package, --tensorboard says how to get it; nothing is connected (the host is unreachable)."""
    shadow = tmp_path / "shadow" / "tensorboard"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    hosts = tmp_path / "hosts.yml"
    hosts.write_text("hosts:\n  nowhere: {host: 192.0.2.1, port: 22}\n")
    spec = tmp_path / "spec.json"
    spec.write_text((FIXTURES / "connection-storm" / "spec.json").read_text())
    p = subprocess.run([*TUNEFLEET, "run", "--hosts", str(hosts), "--spec", str(spec), "--yes", "--tensorboard",
                        "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(shadow.parent)})
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].endswith("pip install tensorboard")
    assert not (tmp_path / "run").exists()
