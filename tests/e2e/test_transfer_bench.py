"""A small case of the transfer benchmark (`make bench` runs it at full size): PPO trained on h1 and
h2, then the policy it stored started on h3 from other buffers, beside bo cold and bo with the
expert prior, written as the page section docs/benchmarks.md holds."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_the_transfer_benchmark_starts_ppo_on_a_new_host_from_the_policy_it_trained(fleet_inventory, tmp_path):
    page, data = tmp_path / "benchmarks.md", tmp_path / "transfer.json"
    page.write_text("# Benchmarks\n\nkept text\n")
    p = subprocess.run([sys.executable, "bench/transfer.py", "--hosts", str(fleet_inventory), "--train", "8",
                        "--reference-budget", "4", "--budget", "3", "--seeds", "1", "--store", str(tmp_path / "store"),
                        "--out", str(page), "--json", str(data)], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    measured = json.loads(data.read_text())
    trained = measured["policy"]
    assert trained and trained.startswith(str(tmp_path / "store")) and (tmp_path / "store" / trained).is_file()
    ppo, = measured["arms"]["ppo (stored policy)"]
    assert ppo["policy"] == trained  # the new host's run started from the policy trained on h1 and h2
    assert all(r["policy"] is None for name, rows in measured["arms"].items() if name != "ppo (stored policy)"
               for r in rows)
    assert measured["level"]["low"] > 0 and measured["train_evaluations"] >= 8
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nkept text\n") and "<!-- section:transfer -->" in text
    assert {"| ppo (stored policy) |", "| bo cold |", "| bo + expert prior |"} <= {
        line[:line.index("|", 2) + 1] for line in text.splitlines() if line.startswith("| ") and "|" in line[2:]}
