"""From the strategy benchmark's raw runs to numbers: best-so-far curves, normalized regret,
false claims; then the report (markdown table + PNG plot).

The definitions are in DEFINITIONS below (they are written into the report).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from bench.sections import kept_sections

FLOOR = -1.0

DEFINITIONS = """\
- A run's **best-so-far** after n evaluations is the highest search reward among its first n
  (reward = relative to the host's own baseline, failures at the floor -1). It is a single noisy
  sample, so it is optimistic; the curves divide it by the reference reward.
- The **reference** of a workload is the configuration a long random search chose after
  re-measuring its top candidates; its reward is their median re-measured reward, and its
  verified change is what its verification measured against the original.
- A run's **normalized regret** is (f* - f) / (f* - f0) in the benchmark's own units (sign
  flipped for a minimized metric): f is the median the verification measured for the run's chosen
  configuration, f* the best such median of any run of that workload (the reference included),
  and f0 the original configuration's median, pooled over every verification of the workload.
  0 = as good as the best configuration anyone found, 1 = no better than the original. Pooling
  f0 keeps one run's noisy original arm out of its regret. A run whose verification failed
  counts as regret 1.
- A **false claim** is a run on the null workload whose result says "improvement" (a change whose
  95% interval excludes zero and whose rank test agrees).
"""


def best_so_far(search: list[dict], budget: int, hosts: int) -> list[float]:
    """The best reward after each round (one evaluation per host, all at once). Within a round the
    recorded order is the order of finishing, which favours fast (often good) settings, so only
    whole rounds count: the curve's points are at hosts, 2 * hosts, ... evaluations."""
    out, best = [], -math.inf
    for start in range(0, budget, hosts):
        for t in search[start:start + hosts]:
            best = max(best, t["reward"] if t["ok"] and t["reward"] is not None else FLOOR)
        out.append(best if best > -math.inf else FLOOR)
    return out


def reference(runs: list[dict], workload: str) -> dict | None:
    ref = next((r for r in runs if r["workload"] == workload and r["role"] == "reference"), None)
    if ref is None:
        return None
    confirm = ref.get("confirm") or {}
    chosen = (confirm.get("candidates") or [{}])[confirm.get("chosen", 0)] if confirm.get("candidates") else {}
    reward = chosen.get("confirm_median")
    if reward is None:  # nothing re-measured: the best search sample
        reward = max((t["reward"] for t in ref["search"] if t["ok"]), default=None)
    v = ref.get("verification") or {}
    return {"config": ref["best_config"], "reward": reward, "change_pct": v.get("change_pct"),
            "significant": v.get("significant")}


def _change(run: dict) -> float | None:
    v = run.get("verification") or {}
    return v.get("change_pct")


def regret_scale(runs: list[dict], goal: str) -> tuple[float, float] | None:
    """(f*, f0) as signed values (larger = better): the best verified median of the chosen
    configurations, and the original's median pooled over every verification."""
    sign = 1.0 if goal == "maximize" else -1.0
    verified = [r["verification"] for r in runs if r.get("verification")]
    if not verified:
        return None
    f_star = max(sign * v["best_median"] for v in verified)
    f0 = statistics.median(sign * v["baseline_median"] for v in verified)
    return (f_star, f0) if f_star > f0 else None


def regret(run: dict, scale: tuple[float, float], goal: str) -> float:
    v = run.get("verification")
    if not v:
        return 1.0
    f_star, f0 = scale
    f = (1.0 if goal == "maximize" else -1.0) * v["best_median"]
    return max(0.0, (f_star - f) / (f_star - f0))


def summarize(data: dict) -> dict:
    """Per workload and strategy: the numbers of the report's table, and the mean curves."""
    runs = data["runs"]
    out = {}
    for key, w in data["workloads"].items():
        ref = reference(runs, key)
        mine = [r for r in runs if r["workload"] == key and r["role"] == "run"]
        if not mine:
            continue
        goal = w["spec"].get("reward_goal", "maximize")
        scale = None if w["null"] else regret_scale([r for r in runs if r["workload"] == key], goal)
        rows, curves = {}, {}
        for strategy in dict.fromkeys(r["strategy"] for r in mine):
            rs = [r for r in mine if r["strategy"] == strategy]
            budget, hosts = rs[0]["budget"], len(rs[0]["hosts"])
            bsf = [best_so_far(r["search"], budget, hosts) for r in rs]
            mean_curve = [statistics.fmean(col) for col in zip(*bsf)]
            row = {
                "runs": len(rs),
                "claims": sum(bool(r["success"]) for r in rs),
                "best_seen_pct": statistics.fmean(r["best_seen_pct"] for r in rs),
                "verified_pct": [_change(r) for r in rs],
                "seconds": statistics.fmean(r["seconds"] for r in rs),
            }
            if scale is not None:
                regrets = [regret(r, scale, goal) for r in rs]
                row["regret_mean"] = statistics.fmean(regrets)
                row["regret_sd"] = statistics.stdev(regrets) if len(regrets) > 1 else 0.0
            if not w["null"] and ref and ref["reward"]:
                target = 0.9 * ref["reward"]
                hits = [next(((i + 1) * hosts for i, b in enumerate(c) if b >= target), None) for c in bsf]
                row["evals_to_90"] = hits
                row["final_bsf_ratio"] = mean_curve[-1] / ref["reward"]
            rows[strategy] = row
            curves[strategy] = {"mean": mean_curve, "runs": bsf, "x": [(i + 1) * hosts for i in range(len(mean_curve))]}
        sign = 1.0 if goal == "maximize" else -1.0
        out[key] = {"title": w["title"], "null": w["null"], "reference": ref, "metric": w["spec"]["reward_metric"],
                    "f_star": sign * scale[0] if scale else None, "f0": sign * scale[1] if scale else None,
                    "rows": rows, "curves": curves}
    return out


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.0), squeeze=False)
    colours = {"ppo": "tab:red", "bo": "tab:blue", "random": "tab:grey"}
    for ax, key in zip(axes[0], keys):
        s = summary[key]
        ref = (s["reference"] or {}).get("reward")
        scale = ref if (ref and not s["null"]) else 0.01  # the null workload: percent
        for strategy, c in s["curves"].items():
            xs = c["x"]
            col = colours.get(strategy)
            for run in c["runs"]:
                ax.plot(xs, [b / scale for b in run], color=col, alpha=0.2, lw=0.8)
            ax.plot(xs, [b / scale for b in c["mean"]], color=col, lw=2, marker="o", ms=3, label=strategy)
        if s["null"]:
            ax.axhline(0.0, color="k", lw=0.8, ls=":")
            ax.set_ylabel("best-so-far reward, % (unverified)")
        else:
            ax.axhline(1.0, color="k", lw=0.8, ls=":", label="reference")
            ax.set_ylabel("best-so-far reward / reference")
            ax.set_ylim(bottom=max(-0.2, ax.get_ylim()[0]))
        ax.set_xlabel("search evaluations (across the fleet; one point per round)")
        ax.set_title(s["title"], fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def _evals(hits: list) -> str:
    found = sorted(h for h in hits if h is not None)
    if not found:
        return f"never (0/{len(hits)})"
    return f"{statistics.median(found):g} ({len(found)}/{len(hits)} runs)"


def _ppo_vs_random(ppo: dict, rnd: dict) -> str:
    """Say plainly whether PPO loses to random search, and whether the seeds can tell."""
    p, r = ppo["regret_mean"], rnd["regret_mean"]
    se = math.sqrt(ppo["regret_sd"] ** 2 / ppo["runs"] + rnd["regret_sd"] ** 2 / rnd["runs"])
    numbers = f"(ppo {p:.3f} ± {ppo['regret_sd']:.3f}, random {r:.3f} ± {rnd['regret_sd']:.3f}, {ppo['runs']} seeds)"
    if abs(p - r) <= 0.02:
        return f"PPO and random search do equally well here {numbers}."
    if p > r:
        if p - r > 2 * se:
            return f"PPO loses to random search here {numbers}."
        return (f"PPO's mean regret is higher than random search's here, by less than twice its standard "
                f"error: with these seeds the difference is not established either way {numbers}.")
    if r - p > 2 * se:
        return f"PPO beats random search here {numbers}."
    return f"PPO's mean regret is lower than random search's, within the seeds' spread {numbers}."


def _findings(summary: dict) -> list[str]:
    lines = []
    for key, s in summary.items():
        rows = s["rows"]
        if not rows:
            continue
        if s["null"]:
            claims = {k: f"{r['claims']}/{r['runs']}" for k, r in rows.items()}
            total = sum(r["claims"] for r in rows.values())
            lines.append(f"- **{key}**: false claims of a significant improvement: "
                         + ", ".join(f"{k} {v}" for k, v in claims.items())
                         + (" — none, as it must be." if total == 0 else " — a tuner must not do this."))
            lines.append("  The best single sample each search saw was on average "
                         + ", ".join(f"{k} {_fmt_pct(r['best_seen_pct'])}" for k, r in rows.items())
                         + ": the winner's curse that verification exists to catch.")
            continue
        regrets = {k: r.get("regret_mean") for k, r in rows.items() if r.get("regret_mean") is not None}
        if not regrets:
            continue
        order = sorted(regrets, key=lambda k: regrets[k])
        lines.append(f"- **{key}**: mean normalized regret " + ", ".join(f"{k} {regrets[k]:.3f}" for k in order) + ".")
        if "ppo" in regrets and "random" in regrets:
            lines.append("  " + _ppo_vs_random(rows["ppo"], rows["random"]))
    return lines


def write_report(data: dict, out: Path) -> None:
    summary = summarize(data)
    png = out.with_suffix(".png")
    plot(summary, png)
    s = data["settings"]
    L = ["# Strategy benchmark: ppo, bo and random at equal budgets", "",
         "Generated by `make bench` — do not edit by hand; rebuild it with the commands below.", "",
         "## How to reproduce", "", "```",
         "make fleet-up            # the local fleet: SSH hosts in network namespaces (deploy/fleet-up.sh)",
         "make bench               # = .venv/bin/python bench/strategies.py --out docs/benchmarks.md",
         f".venv/bin/python {data['command']}   # the command that produced this page",
         ".venv/bin/python bench/strategies.py --out docs/benchmarks.md --from-json docs/benchmarks.json"
         "   # rebuild this page from the saved runs, no fleet",
         "```", "",
         f"Run on {data['date']}: hosts {s['limit']} of `inventory/local.yml` (network namespaces sharing one "
         f"kernel and {data.get('cpus') or '?'} cores), {s['seeds']} seeds per strategy, search budget {s['budget']} "
         "evaluations per run "
         f"(counted across the fleet), top {s['confirm_top']} re-measured, {s['verify_repeats']} A/B pairs per host "
         f"in verification; reference: random search with budget {s['reference_budget']}. "
         f"The whole benchmark took {data['minutes']} minutes. Every number below comes from real benchmark runs.", "",
         "## Results", ""]
    L += ["| workload | strategy | normalized regret (mean ± sd) | best-so-far / reference at the end "
          "| evaluations to 90% of the reference | claimed a significant improvement | best single sample (unverified) "
          "| verified change per seed | s per run |",
          "|---|---|---|---|---|---|---|---|---|"]
    for key, sm in summary.items():
        for strategy, r in sm["rows"].items():
            regret = f"{r['regret_mean']:.3f} ± {r['regret_sd']:.3f}" if "regret_mean" in r else "n/a (null)"
            ratio = f"{r['final_bsf_ratio']:.2f}" if "final_bsf_ratio" in r else "-"
            e90 = _evals(r["evals_to_90"]) if "evals_to_90" in r else "-"
            L.append(f"| {key} | {strategy} | {regret} | {ratio} | {e90} | {r['claims']}/{r['runs']} "
                     f"| {_fmt_pct(r['best_seen_pct'])} | {', '.join(_fmt_pct(v) for v in r['verified_pct'])} "
                     f"| {r['seconds']:.0f} |")
    L += ["", "References (long random search, top candidates re-measured, then verified):", ""]
    for key, sm in summary.items():
        ref = sm["reference"]
        if ref:
            cfg = ", ".join(f"{k} = {v}" for k, v in ref["config"].items())
            L.append(f"- {key}: {cfg}; re-measured reward {ref['reward']:+.3f}, verified change "
                     f"{_fmt_pct(ref['change_pct'])}. For the regret: f* = {sm['f_star']:.4g}, "
                     f"f0 = {sm['f0']:.4g} ({sm['metric']})")
        elif sm["null"]:
            L.append(f"- {key}: none (no knob can matter; regret is undefined, false claims are what counts)")
    L += ["", f"![best-so-far curves]({png.name})", "",
          "Thin lines: single runs; thick: the mean over seeds. The curves are single search samples "
          "(optimistic); the table's regret uses what verification measured.", "",
          "Why the strategies and the run flow look the way they do, and what changed PPO: "
          "[strategies.md](strategies.md).", "", "## Findings", ""]
    L += _findings(summary)
    L += ["", "## Workloads", ""]
    for key, w in data["workloads"].items():
        knobs = ", ".join(f"`{k['param']}` {k.get('min')} .. {k.get('max')}" for k in w["spec"]["action_space"])
        start = (" Hosts start from " + ", ".join(f"`{k} = {v}`" for k, v in w["start"].items())
                 + " (set before the run, the true originals restored after it).") if w["start"] else ""
        L.append(f"- **{key}** — {w['title']}: `{w['spec']['benchmark_command']}`, reward "
                 f"`{w['spec']['reward_metric']}` ({w['spec']['reward_goal']}); knobs {knobs}.{start}")
    L += ["", "## Definitions", "", DEFINITIONS]
    kept = kept_sections(out)  # other benchmarks' sections of this page survive a rewrite
    out.write_text("\n".join(L).rstrip("\n") + "\n" + ("\n" + kept if kept else ""))
