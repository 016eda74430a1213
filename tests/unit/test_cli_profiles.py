"""`tunefleet profiles`: the list, one profile in full, --json for scripts, --profile-file, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from controller import profiles

TUNEFLEET = [sys.executable, "-m", "controller.cli"]
ROOT = Path(__file__).resolve().parents[2]


def cli(*args):
    return subprocess.run([*TUNEFLEET, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "250"})


def test_the_list_names_every_profile_with_its_source_and_sysctl_count():
    p = cli("profiles")
    assert p.returncode == 0, p.stderr
    for name in profiles.names():
        row = next(line for line in p.stdout.splitlines() if f" {name} " in line)
        assert f" {len(profiles.get(name).values)} " in row
    assert "TuneD 2.20.0" in p.stdout and f"{len(profiles.names())} profile(s)" in p.stdout
    listed = json.loads(cli("profiles", "--json").stdout)
    assert [r["name"] for r in listed] == profiles.names()
    assert {r["name"]: r["sysctls"] for r in listed} == {n: len(profiles.get(n).values) for n in profiles.names()}


def test_one_profile_shows_every_sysctl_with_why_then_what_is_not_a_sysctl():
    p = cli("profiles", "tuned:network-throughput")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    want = profiles.get("tuned:network-throughput")
    for name in want.values:
        line = next(line for line in out.splitlines() if f" {name} " in line)
        assert want.written(name) in line and want.origin[name] in line
    assert "Increase kernel buffer size maximums" in out and ">2048" in out
    rest = out.index("not sysctls")
    assert out.index("net.ipv4.tcp_rmem") < rest < out.index("[cpu] governor") and "[disk] readahead" in out[rest:]
    doc = json.loads(cli("profiles", "redis:docs", "--json").stdout)
    assert doc == json.loads(json.dumps(profiles.get("redis:docs").to_dict()))
    assert doc["written"]["net.core.somaxconn"] == ">511" and doc["why"]["vm.overcommit_memory"].startswith("Set the")


def test_workload_filter_and_a_users_profile_file(tmp_path):
    p = json.loads(cli("profiles", "--workload", "redis", "--json").stdout)
    assert [r["name"] for r in p] == [x.name for x in profiles.for_workload("redis")]
    conf = tmp_path / "my-web" / "tuned.conf"
    conf.parent.mkdir()
    conf.write_text("[main]\nsummary=mine\ninclude=network-latency\n[sysctl]\nnet.core.somaxconn=8192\n")
    listed = cli("profiles", "--profile-file", str(conf.parent))
    assert listed.returncode == 0 and " file:my-web " in listed.stdout
    shown = json.loads(cli("profiles", "file:my-web", "--profile-file", str(conf), "--json").stdout)
    assert shown["values"]["net.core.somaxconn"] == "8192" and shown["values"]["net.ipv4.tcp_fastopen"] == "3"


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path):
    for args, message in ((["tuned:nope"], "unknown profile 'tuned:nope'; known: postgresql:docs"),
                          (["--workload", "mysql"], "unknown workload 'mysql'"),
                          (["--profile-file", str(tmp_path / "missing.conf")], "no such profile file")):
        p = cli("profiles", *args)
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_the_cli_loads_the_profiles_only_when_asked():
    code = "import sys, controller.cli; print(' '.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.split()
    assert "controller.profiles" not in loaded
