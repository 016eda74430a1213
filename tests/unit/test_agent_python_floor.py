"""The agent runs on the hosts' own python3, which may be as old as 3.7 (openEuler 20.03, Debian 10).

vermin reads node_agent/ and names the oldest Python each construct needs: syntax (walrus, match,
positional-only parameters), library members (str.removeprefix, shlex.join), and annotations that
are evaluated at definition time (dict[str, int] without ``from __future__ import annotations``).
A missing vermin fails here rather than skipping: it comes with the `test` extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "node_agent"
FLOOR = "3.7"


def vermin(path: Path) -> subprocess.CompletedProcess:
    run = "import sys, vermin; sys.argv[0] = 'vermin'; sys.exit(vermin.main())"
    cmd = [sys.executable, "-c", run, "--no-tips", "--violations", "--eval-annotations", f"-t={FLOOR}-", str(path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if "No module named 'vermin'" in p.stderr:
        pytest.fail("vermin is not installed: pip install -e '.[test]'")
    return p


def test_the_agent_needs_nothing_newer_than_python_3_7():
    p = vermin(AGENT)
    assert p.returncode == 0, f"node_agent/ needs a Python newer than {FLOOR}:\n{p.stdout}{p.stderr}"
    assert "Minimum required versions" in p.stdout


@pytest.mark.parametrize("code, feature", [
    ("def f(s):\n    if (n := len(s)) > 1:\n        return n\n", "named expressions"),
    ("def f():\n    return 'tunefleet-x'.removeprefix('tunefleet-')\n", "str.removeprefix"),
    ("import shlex\n\ndef f(argv):\n    return shlex.join(argv)\n", "shlex.join"),
    ("def f(values) -> dict[str, int]:\n    return {}\n", "dict[..]"),
])
def test_the_check_fails_on_code_a_3_7_host_cannot_run(tmp_path, code, feature):
    copy = tmp_path / "node_agent"
    shutil.copytree(AGENT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "runner.py", "a") as f:
        f.write("\n\n" + code)
    p = vermin(copy)
    assert p.returncode != 0, p.stdout
    assert feature in p.stdout and "runner.py" in p.stdout
