"""The simulated-fleet benchmark's numbers and its section of docs/benchmarks.md.

Mean regret per strategy and budget with a 95% bootstrap interval over seeds, and paired
comparisons (the same held-out member and seed under two strategies) for the issue's targets:
a difference counts only when its own 95% interval excludes zero.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from bench.sections import update_section

N_BOOT = 5000


def _ci(x: np.ndarray, seed: int = 0) -> tuple[float, float]:
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(N_BOOT, len(x)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _regrets(data: dict, label: str, budget: int) -> dict[int, float]:
    return {r["seed"]: r["regret"] for r in data["runs"] if r["label"] == label and r["budget"] == budget}


def paired(data: dict, a: str, b: str, budget: int) -> dict | None:
    """Mean of regret(a) - regret(b) over the seeds both ran, with its 95% interval."""
    ra, rb = _regrets(data, a, budget), _regrets(data, b, budget)
    seeds = sorted(set(ra) & set(rb))
    if not seeds:
        return None
    d = np.array([ra[s] - rb[s] for s in seeds])
    low, high = _ci(d)
    return {"mean": float(d.mean()), "low": low, "high": high, "n": len(seeds)}


def summarize(data: dict) -> dict:
    cells = {}
    for label in data["settings"]["cells"]:
        row = {}
        for b in data["settings"]["budgets"]:
            x = np.array(list(_regrets(data, label, b).values()))
            if len(x):
                low, high = _ci(x)
                row[b] = {"mean": float(x.mean()), "low": low, "high": high, "n": len(x)}
        cells[label] = row
    return {"cells": cells, "targets": targets(data, cells)}


def by_knobs(data: dict, budget: int) -> dict[str, dict[int, dict]]:
    """Mean regret per strategy and knob count at one budget: where a cell's mean comes from
    (each knob count is a quarter of the seeds, too few for an interval of its own)."""
    out: dict[str, dict[int, dict]] = {}
    for label in data["settings"]["cells"]:
        for d in data["settings"]["dims"]:
            x = [r["regret"] for r in data["runs"] if r["label"] == label and r["budget"] == budget and r["dims"] == d]
            if x:
                out.setdefault(label, {})[d] = {"mean": float(np.mean(x)), "n": len(x)}
    return out


def targets(data: dict, cells: dict) -> list[tuple[str, str]]:
    """The issue's targets, each with what was measured (met / not met / not measured)."""
    def cell(label, b):
        return cells.get(label, {}).get(b)

    out = []
    c = cell("ppo trained", 12)
    vs = paired(data, "ppo trained", "bo", 12)
    if c is not None and vs is not None:
        ok = c["mean"] <= 0.05 and vs["high"] < 0
        out.append(("ppo trained <= 0.05 at 12 and better than bo cold by a margin its CI supports",
                    f"{'met' if ok else 'NOT met'}: {c['mean']:.3f}; ppo trained - bo = {vs['mean']:+.3f} "
                    f"[{vs['low']:+.3f}, {vs['high']:+.3f}]"))
    c = cell("bo", 24)
    if c is not None:
        out.append(("bo cold <= 0.10 at 24", f"{'met' if c['mean'] <= 0.10 else 'NOT met'}: {c['mean']:.3f}"))
    prior_cells = [label for label in cells if label.endswith("+ priors") and cell(label, 12)]
    if prior_cells:
        best = min(prior_cells, key=lambda label: cells[label][12]["mean"])
        m = cells[best][12]["mean"]
        out.append(("some strategy with expert priors <= 0.05 at 12",
                    f"{'met' if m <= 0.05 else 'NOT met'}: best is {best}, {m:.3f}"))
    worse = []
    for b in data["settings"]["budgets"]:
        d = paired(data, "ppo cold", "random", b)
        if d is not None and d["low"] > 0:
            worse.append(f"{b} ({d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}])")
    if cell("ppo cold", data["settings"]["budgets"][0]) is not None and "random" in cells:
        out.append(("ppo cold never worse than random by a margin its CI supports",
                    "met" if not worse else "NOT met at budget " + ", ".join(worse)))
    return out


def _by_knobs_lines(data: dict) -> list[str]:
    budget = 24 if 24 in data["settings"]["budgets"] else data["settings"]["budgets"][-1]
    rows = by_knobs(data, budget)
    dims = data["settings"]["dims"]
    if len(dims) < 2 or not rows:
        return []
    n = max(c["n"] for row in rows.values() for c in row.values())
    L = ["", f"Where the means come from: mean regret at budget {budget} by the member's knob count "
         f"({n} seeds each, too few for intervals of their own):", "",
         "| strategy | " + " | ".join(f"{d} knobs" for d in dims) + " |", "|---|" + "---|" * len(dims)]
    for label, row in rows.items():
        L.append(f"| {label} | " + " | ".join(f"{row[d]['mean']:.3f}" if d in row else "-" for d in dims) + " |")
    return L


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # auto runs what it chose (bo or ppo trained): the same curves again, left out of the plot
    both = (("without priors", [k for k in table["cells"] if "priors" not in k and not k.startswith("auto")]),
            ("with expert priors", [k for k in table["cells"] if "priors" in k]))
    panels = [p for p in both if p[1]]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, (title, labels) in zip(axes, panels):
        for i, label in enumerate(labels):
            row = table["cells"][label]
            xs = sorted(row)
            shift = 1.0 + 0.03 * (i - len(labels) / 2)  # side by side, so the bars do not hide each other
            err = [[row[b]["mean"] - row[b]["low"] for b in xs], [row[b]["high"] - row[b]["mean"] for b in xs]]
            ax.errorbar([b * shift for b in xs], [row[b]["mean"] for b in xs], yerr=err, marker="o", ms=4,
                        capsize=3, lw=1.4, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({b for row in table["cells"].values() for b in row}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("search budget (evaluations across 3 hosts)")
        ax.set_ylim(bottom=0.0)
        ax.legend(fontsize=8)
        ax.set_title(f"{title}: mean regret over seeds, 95% bootstrap CI", fontsize=9)
    axes[0].set_ylabel("normalized regret (0 = optimum, 1 = original)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_section(data: dict, table: dict, out: Path, json_path: Path, held_out: int) -> None:
    """The simulated fleet's section of ``out`` and its chart; ``held_out``: the first held-out member."""
    png = out.with_name(out.stem + "-sim.png")
    plot(table, png)
    s = data["settings"]
    budgets = s["budgets"]
    L = ["## Strategies on the simulated fleet", "",
         "A benchmark aid, not a test of real hosts: 3 simulated hosts (controller/learn/simfleet.py) answer "
         "the agent protocol, and every run is a full `tune()` (baseline, search, confirm, verification). "
         "The regret of the configuration a run chose is measured on the member's noiseless surface: "
         "0 = the optimum, 1 = the original configuration (a choice worse than the original counts as 1). "
         f"Seed s runs held-out member {held_out}+s with {'/'.join(map(str, s['dims']))} knobs (by s mod "
         f"{len(s['dims'])}); originals 1.2x to 1000x worse than the optimum, 1-10% noise. "
         f"\"ppo trained\" starts from the policy PPO left after runs on {s['train_members']} other members "
         + (f"(budget {s['train_budget']} each, one after the other through the policy store; "
            if s.get("train_per_run", 1) == 1 else
            f"({s['train_per_run']} at a time: each training run is a fleet of {s['train_per_run']} hosts, each "
            f"a different member, {s['train_budget']} evaluations per host, and the runs follow one another "
            "through the policy store; ")
         + f"{s.get('policies', 1)} such policies trained independently per knob count, seed s starting from "
         f"policy (s div {len(s['dims'])}) mod {s.get('policies', 1)}, so the intervals include how much the "
         "result depends on the training run); \"+ priors\" "
         "evaluates two expert configurations first (bench/simbench.py, `expert_priors`), inside the budget.", "",
         "```",
         f".venv/bin/python {data['command']}",
         f".venv/bin/python bench/simbench.py --out {out.as_posix().split('/')[-2]}/{out.name} "
         f"--from-json {json_path.parent.name}/{json_path.name}   # rebuild this section",
         "```", "",
         f"Run on {data['date']}, {data.get('cpus') or '?'} cores, {s['seeds']} seeds per cell: "
         f"{data['minutes']} minutes in all ({data.get('training_minutes', 0)} of them training the "
         "transferred policies). Mean regret [95% CI]:", "",
         "| strategy | " + " | ".join(f"budget {b}" for b in budgets) + " |",
         "|---|" + "---|" * len(budgets)]
    for label, row in table["cells"].items():
        cells = [f"{row[b]['mean']:.3f} [{row[b]['low']:.3f}, {row[b]['high']:.3f}]" if b in row else "-"
                 for b in budgets]
        L.append(f"| {label} | " + " | ".join(cells) + " |")
    failed = [r for r in data["runs"] if r.get("error")]
    if failed:
        L += ["", f"{len(failed)} of {len(data['runs'])} runs ended without a successful evaluation (the tool "
              "then stops and the hosts keep their originals: regret 1): "
              + ", ".join(sorted({f"{r['label']} at {r['budget']}" for r in failed})) + "."]
    short = Counter((r["label"], r["budget"] - r["evaluations"]) for r in data["runs"]
                    if not r.get("error") and r["evaluations"] < r["budget"])
    if short:
        L += ["", "Runs that spent less than their budget (PPO steps every live host at once, so it leaves what "
              "does not fill a round, e.g. after two priors on three hosts): "
              + "; ".join(f"{label}: {n} runs, {k} fewer" for (label, k), n in sorted(short.items())) + "."]
    L += ["", f"![regret by budget]({png.name})", "", "Targets (paired differences: same member and seed):", ""]
    L += [f"- {what}: {status}" for what, status in table["targets"]]
    L += _by_knobs_lines(data)
    if data.get("training"):
        L += ["", "Training runs of the transferred policies, in order: the regret of the one configuration each "
              "run chose, averaged over the run's members (with several members per run no one configuration "
              "fits them all; it is what the run reports, not what the policy learned):", ""]
        L += [f"- {t['dims']} knobs, seeds from {t.get('first_seed', 500)}: "
              f"{', '.join(f'{r:.2f}' for r in t['regrets'])} ({t['seconds']:.0f} s)"
              for t in data["training"]]
    if data.get("probes"):
        L += ["", "Does the transferred policy follow the rule \"listen overflows while the accept queue is short: "
              f"raise it\"? Over {data['probes'][0].get('members', 40)} held-out members, step-1 configurations whose "
              "queue is shorter than the "
              "member's burst, with the features the member emits there: the share where the policy's next "
              "configuration has a longer queue, and the same with the overflow and drop features set to \"none\":", ""]
        L += [f"- {p['dims']} knobs: raises the queue after {p['raised']:.0%} of {p['overflowing_steps']} overflowing "
              f"steps, {p['raised_without_overflows']:.0%} when the overflows are hidden" for p in data["probes"]]
    L += ["", f"Data: [{json_path.name}]({json_path.name})."]
    update_section(out, "simulated", "\n".join(L))
