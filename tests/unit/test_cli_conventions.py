"""Command-line conventions: shell completion, NO_COLOR, --quiet/--verbose, and the current values
shown before anything changes (with host facts captured from real agents)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from controller.report import print_changes, print_plan
from controller.spec import TuningSpec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "run_folders"
STORM = FIXTURES / "connection-storm"
TUNEFLEET = [sys.executable, "-m", "controller.cli"]
COLOUR = re.compile(r"\x1b\[[0-9;]*3[0-7]m")  # an SGR foreground colour


def cli(*args, **env):
    return subprocess.run([*TUNEFLEET, *args], capture_output=True, text=True, env={**os.environ, **env})


def facts() -> dict[str, dict]:
    return {n: h["facts"] for n, h in json.loads((STORM / "hosts.json").read_text()).items()}


def recorded() -> Console:
    return Console(record=True, width=200, color_system=None)


def test_shell_completion_is_offered_and_completes():
    entry = [str(Path(sys.executable).parent / "tunefleet")]
    # the shell named, not detected from the parent processes (a test run need not have a shell above it)
    script = subprocess.run([*entry, "--show-completion", "bash"], capture_output=True, text=True,
                            env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert script.returncode == 0 and "_TUNEFLEET_COMPLETE=complete_bash" in script.stdout
    for words, cword, want in (("tunefleet ex", 1, "export"), ("tunefleet export x --form", 3, "--format")):
        p = subprocess.run(entry, capture_output=True, text=True, env={
            **os.environ, "_TUNEFLEET_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
        assert p.stdout.split() == [want]


def test_no_color_turns_colour_off():
    coloured = cli("show", str(STORM), FORCE_COLOR="1")
    plain = cli("show", str(STORM), FORCE_COLOR="1", NO_COLOR="1")
    assert COLOUR.search(coloured.stdout)  # the check sees colour when there is some
    assert plain.returncode == 0 and "improvement of 99.5%" in plain.stdout and not COLOUR.search(plain.stdout)


def test_quiet_and_verbose_together_are_refused():
    p = cli("-q", "-v", "runs")
    assert p.returncode != 0 and "contradict" in p.stderr and "Traceback" not in p.stderr


def test_plan_shows_each_knobs_current_value_and_range():
    spec = TuningSpec.load(STORM / "spec.json")
    out = recorded()
    print_plan(out, spec, hosts=facts())
    text = out.export_text()
    row = next(line for line in text.splitlines() if line.startswith("net.core.somaxconn"))
    assert re.search(r"64 \.\. 4096\s+log\s+128\s", row)  # range, scale, the hosts' value today
    hosts = facts()
    hosts["h2"]["knobs"]["net.core.somaxconn"]["value"] = "4096"
    out = recorded()
    print_plan(out, spec, hosts=hosts)
    assert "h1: 128; h2: 4096; h3: 128" in out.export_text()


def test_plan_lists_the_expert_priors_with_their_reasons():
    spec = TuningSpec.load(STORM / "spec.json")
    out = recorded()
    print_plan(out, spec)
    assert "expert priors" not in out.export_text()  # this run's spec has none
    data = spec.to_dict()
    data["initial_candidates"] = [{"values": {k["param"]: 4096 for k in data["action_space"]},
                                   "reason": "queues longer than the burst"}]
    out = recorded()
    print_plan(out, TuningSpec.from_dict(data, "test"))
    text = out.export_text()
    assert "expert priors (evaluated first, inside the budget): 1" in text
    assert "1. net.core.somaxconn = 4096, net.ipv4.tcp_max_syn_backlog = 4096  (queues longer than the burst)" in text


def test_keeping_shows_current_to_new_per_host_first():
    out = recorded()
    print_changes(out, facts(), {"net.core.somaxconn": "1469", "net.ipv4.tcp_max_syn_backlog": "2048"})
    lines = out.export_text().splitlines()
    assert lines[0] == "h1: net.core.somaxconn 128 -> 1469"  # backlog is 2048 already: not a change
    assert len(lines) == 3


def test_quiet_keeps_the_result_and_drops_the_chatter():
    goal = "make new connections to my web servers faster"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_") and k != "TUNEFLEET_MODEL"}
    loud = subprocess.run([*TUNEFLEET, "plan", goal], capture_output=True, text=True, env=env)
    quiet = subprocess.run([*TUNEFLEET, "--quiet", "plan", goal], capture_output=True, text=True, env=env)
    assert "note:" in loud.stderr and quiet.stderr == ""
    assert quiet.returncode == 0 and quiet.stdout == loud.stdout
