"""Export formats from run folders captured from real runs: what each says, where it comes from,
and that an unverified result needs --force. The real tools load them in tests/e2e/test_export_e2e.py."""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller import export
from controller.errors import UserError
from controller.history import load_run

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "run_folders"
TUNEFLEET = [sys.executable, "-m", "controller.cli"]


@pytest.fixture()
def verified():
    return load_run(FIXTURES / "connection-storm")


@pytest.fixture()
def unverified():
    return load_run(FIXTURES / "stream-no-significant")


def test_every_format_names_the_run_workload_and_change(verified):
    for fmt in export.FORMATS:
        text = export.render(verified, fmt)
        assert str(verified.path.resolve()) in text
        assert "Connection storm (accept backlog)" in text
        assert ("+99.5%" in text) or (fmt == "json" and json.loads(text)["verification"]["change_pct"] > 99)


def test_sysctl_d_holds_the_best_configuration(verified):
    lines = [line for line in export.render(verified, "sysctl.d").splitlines() if not line.startswith("#")]
    assert lines == ["net.core.somaxconn = 1469", "net.ipv4.tcp_max_syn_backlog = 600"]


def test_an_unverified_result_needs_force_and_says_so(unverified):
    with pytest.raises(UserError, match="not a verified improvement.*--force"):
        export.render(unverified, "sysctl.d")
    text = export.render(unverified, "sysctl.d", force=True)
    assert "NOT a verified improvement" in text
    assert "net.ipv4.tcp_rmem = 4096 12070 91463" in text


def test_tuned_profile_reads_back_as_tuned_reads_it(verified):
    text = export.render(verified, "tuned", include="throughput-performance")
    parser = configparser.ConfigParser(delimiters=("=",), inline_comment_prefixes=("#",), interpolation=None)
    parser.optionxform = str  # TuneD keeps sysctl names as written
    parser.read_string(text)
    assert parser["main"]["include"] == "throughput-performance"
    assert parser["main"]["summary"].startswith("tunefleet: Connection storm")
    assert dict(parser["sysctl"]) == {"net.core.somaxconn": "1469", "net.ipv4.tcp_max_syn_backlog": "600"}
    plain = configparser.ConfigParser(interpolation=None)
    plain.read_string(export.render(verified, "tuned"))
    assert "include" not in plain["main"]
    with pytest.raises(UserError, match="not a TuneD profile name"):
        export.render(verified, "tuned", include="bad name\n[sysctl]")


def test_ansible_playbook_sets_each_value_with_ansible_posix_sysctl(verified):
    play = yaml.safe_load(export.render(verified, "ansible"))[0]
    task = play["tasks"][0]
    assert play["become"] is True and "ansible.posix.sysctl" in task
    assert play["vars"]["tunefleet_sysctl"] == {"net.core.somaxconn": "1469", "net.ipv4.tcp_max_syn_backlog": "600"}


def test_shell_quotes_vector_values_as_one_word(unverified):
    text = export.render(unverified, "shell", force=True)
    commands = [shlex.split(line) for line in text.splitlines() if line.startswith("sysctl")]
    assert commands == [["sysctl", "-w", "net.ipv4.tcp_rmem=4096 12070 91463"],
                        ["sysctl", "-w", "net.ipv4.tcp_wmem=4096 40646 69851"]]
    assert subprocess.run(["sh", "-n"], input=text, text=True).returncode == 0


def test_a_value_that_is_not_a_sysctl_setting_is_refused(tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(FIXTURES / "connection-storm", folder)
    result = json.loads((folder / "result.json").read_text())
    result["best_config"]["net.core.somaxconn"] = "1\nkernel.panic = 1"
    (folder / "result.json").write_text(json.dumps(result))
    with pytest.raises(UserError, match="refusing to export"):
        export.render(load_run(folder), "sysctl.d")


def test_cli_writes_files_refuses_overwrite_and_unverified(tmp_path):
    run = str(FIXTURES / "connection-storm")
    out = tmp_path / "profile"
    p = subprocess.run([*TUNEFLEET, "export", run, "--format", "tuned", "--output", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (out / "tuned.conf").read_text().count("[sysctl]") == 1
    again = subprocess.run([*TUNEFLEET, "export", run, "--format", "tuned", "--output", str(out)],
                           capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr and "Traceback" not in again.stderr
    p = subprocess.run([*TUNEFLEET, "export", str(FIXTURES / "stream-no-significant"), "--format", "shell"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and p.stdout == ""
    assert p.stderr.strip().count("\n") == 0 and "--force" in p.stderr
    script = tmp_path / "apply.sh"
    p = subprocess.run([*TUNEFLEET, "export", run, "--format", "shell", "-o", str(script)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and script.stat().st_mode & 0o111
