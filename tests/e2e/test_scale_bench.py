"""A small case of the scale benchmark (`make bench-scale` runs it at 1 to 64 hosts): threads, Ray
and the naive loop measured side by side on the local fleet, written as the page section that
docs/benchmarks.md holds, with the targets judged on the rows measured."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_the_scale_benchmark_measures_threads_ray_and_the_naive_loop(fleet_inventory, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nkept text\n")
    p = subprocess.run([sys.executable, "bench/scale.py", "--hosts", str(fleet_inventory), "--sizes", "1,3",
                        "--per-actor", "", "--rounds", "2,6", "--sleep-rounds", "1", "--repeats", "2",
                        "--out", str(page)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nkept text\n") and "<!-- section:scale -->" in text
    rows = [line for line in text.splitlines() if re.match(r"\| at once \| \d+ \|", line)]
    kinds = {(int(r.split("|")[2]), r.split("|")[3].strip().split(" ")[0]) for r in rows}
    assert kinds == {(1, "threads"), (1, "ray"), (1, "naive"), (3, "threads"), (3, "ray"), (3, "naive")}, rows
    ray3 = next(r for r in rows if r.split("|")[2].strip() == "3" and "ray" in r)
    assert "(16 per actor: 1 actor)" in ray3  # three hosts shared one actor
    assert "marginal cost <= 5 ms amortized at 3 hosts, threads and Ray:" in text
    assert re.search(r"A call to an actor, awaited on its own, takes \d+\.\d\d ms", text)  # Ray's per-round floor
    assert "--repeats 2" in text and "the median of 2 such pairs of runs" in text
    header = next(line for line in text.splitlines() if line.startswith("| fleet route ACKs |"))
    assert "| cores busy (echo runs) |" in header and all(r.count("|") == header.count("|") for r in rows), rows
    assert all(re.search(r"\| \d+% \|", r) for r in rows if "naive" not in r), rows
    # whether Ray's extra time was waiting or computing, from the machine's busy cores
    assert re.search(r"at 3 hosts the machine's cores were busy \d+% of the time with threads and \d+% with Ray: ",
                     text)
