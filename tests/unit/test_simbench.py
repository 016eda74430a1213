"""The simulated-fleet strategy benchmark in its quick mode: the machinery end to end, and a
difference it must see (bo against random search on 4-knob members at budget 24)."""

from __future__ import annotations

from bench import simbench, simreport


def test_quick_benchmark_tells_bo_from_random(tmp_path):
    args = simbench.parse_args(["--quick", "--jobs", "1"])
    data = simbench.collect(args)
    assert {(r["label"], r["budget"]) for r in data["runs"]} == {("random", 24), ("bo", 24)}
    assert all(r["evaluations"] == 24 and 0.0 <= r["regret"] <= 1.0 for r in data["runs"])
    table = simreport.summarize(data)
    bo, rnd = table["cells"]["bo"][24], table["cells"]["random"][24]
    assert bo["n"] == rnd["n"] == 6 and bo["low"] <= bo["mean"] <= bo["high"]
    diff = simreport.paired(data, "bo", "random", 24)
    assert diff["mean"] < -0.15 and diff["high"] < 0, diff  # bo's advantage, supported by its interval

    out = tmp_path / "benchmarks.md"
    out.write_text("# page\n\n<!-- section:other -->\nkept\n<!-- /section:other -->\n")
    json_path = tmp_path / "benchmarks-sim.json"
    simreport.write_section(data, table, out, json_path)
    text = out.read_text()
    assert "kept" in text and "## Strategies on the simulated fleet" in text and "| bo | " in text
    assert (tmp_path / "benchmarks-sim.png").stat().st_size > 1000
