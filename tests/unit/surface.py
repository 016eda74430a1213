"""A host whose benchmark is a formula: the smallest object with fleet.Host's `request` contract
(read, apply, run with streamed `sample` events), for tests of the learning path that need many
evaluations. Real hosts are tested in tests/e2e; this stands in only where a strategy's statistics
are the subject.

The surface: two knobs on log ranges 1..10^6 and a throughput that is 1 at the original values
and `peak` at the optimum (a bump in log space, like a buffer that is too small or too large),
with multiplicative noise. While the first knob is below its optimum the host's accept queue
overflows, as a kernel's would: tcp_listen_overflows rises with the shortfall.
"""

from __future__ import annotations

import math
import random

from controller.fleet.executor import ThreadExecutor
from controller.learn import features
from controller.learn.evaluation import HostEvaluator, Recorder
from controller.learn.search import SearchContext
from controller.spec import TuningSpec

KNOBS = ("net.ipv4.tcp_rmem_like", "net.core.somaxconn_like")


def spec(**extra) -> TuningSpec:
    return TuningSpec.from_dict({
        "workload_name": "surface", "reward_metric": "throughput_mb_s",
        "benchmark_command": "tunefleet-bench stream",
        "action_space": [{"param": k, "min": 1, "max": 1_000_000} for k in KNOBS], **extra})


class SurfaceHost:
    def __init__(self, name: str, optimum=(0.8, 0.7), peak: float = 1000.0, width: float = 0.25,
                 noise: float = 0.03, seed: int = 0):
        self.name = name
        self.facts = {"kernel": "6.18.0-test"}
        self.optimum, self.peak, self.width, self.noise = optimum, peak, width, noise
        self.values = {k: "1" for k in KNOBS}
        self.rng = random.Random(seed)

    def units(self, values: dict[str, str]) -> list[float]:
        return [math.log(float(values[k])) / math.log(1e6) for k in KNOBS]

    def truth(self, values: dict[str, str]) -> float:
        """The noise-free throughput of a configuration."""
        d2 = sum((u - o) ** 2 for u, o in zip(self.units(values), self.optimum))
        return self.peak ** math.exp(-d2 / (2 * self.width ** 2)) / self.peak ** math.exp(
            -sum(o ** 2 for o in self.optimum) / (2 * self.width ** 2))

    def request(self, op: str, args: dict | None = None, *, timeout: float = 30.0, on_event=None):
        args = args or {}
        if op == "read":
            return {"values": {k: self.values[k] for k in args["names"]}, "missing": [], "errors": {}}
        if op == "apply":
            self.values.update({k: str(v) for k, v in args["values"].items()})
            return {"applied": dict(args["values"]), "refused": {}}
        if op == "run":
            if args.get("apply"):  # the evaluation's values come with its run, as to the agent
                self.request("apply", args["apply"])
            shortfall = max(0.0, self.optimum[0] - self.units(self.values)[0])
            metrics = {"cpu_util": 50.0, "tcp_listen_overflows": round(5000 * shortfall), "mem_used_pct": 20.0}
            for t in range(3):  # the agent's per-second samples
                if on_event is not None:
                    on_event({"event": "sample", "id": 1, "data": {"t": float(t), "metrics": dict(metrics)}})
            value = self.truth(self.values) * math.exp(self.rng.gauss(0.0, self.noise))
            return {"exit_code": 0, "timed_out": False, "stdout_tail": f"throughput_mb_s = {value:.6g}\n",
                    "metrics": metrics}
        raise AssertionError(f"unexpected op {op}")


def context(hosts: list[SurfaceHost], the_spec: TuningSpec, budget: int, seed: int = 0, **kw) -> SearchContext:
    """A SearchContext as the tuner builds it: each host's baseline measured on its originals."""
    recorder = Recorder()
    evaluators = {h.name: HostEvaluator(h, the_spec, recorder) for h in hosts}
    for ev in evaluators.values():
        base = [ev.evaluate(None, phase="baseline") for _ in range(2)]
        ev.baseline = sorted(t.raw for t in base)[0]
        ev.baseline_aggregates = features.mean_aggregates([t.aggregates for t in base])
    originals = {h.name: dict(h.values) for h in hosts}
    return SearchContext(spec=the_spec, evaluators=evaluators, originals=originals, baseline_metrics={},
                         executor=ThreadExecutor(len(hosts)), recorder=recorder, budget=budget, seed=seed,
                         log=lambda text: None, **kw)
