"""`tunefleet --help` stays instant: the CLI module imports none of the heavy libraries, which
only the commands that use them load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "stable_baselines3", "ray", "optuna", "openai", "numpy", "scipy", "matplotlib", "mcp", "anyio")


def test_importing_the_cli_loads_no_heavy_library():
    code = "import sys, controller.cli; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    loaded = sorted({m.split(".")[0] for m in out} & set(HEAVY))
    assert loaded == []
