"""Which metric features a trained policy relies on, measured on the simulated family.

PPO is trained as bench/simbench.py trains the transferred policy (members 0 .. N-1 of the family,
controller/learn/simfleet.py, --per-run of them at a time, full tune() runs through one policy
store); then a run on a held-out member starts from it. Over the observations of that run's search
(knobs in force + features + last reward, rebuilt from trials.jsonl), the sensitivity of the
policy's mean action to each feature is |d mean action / d feature| (summed over the action's
dimensions) times that feature's spread in those observations: how far the feature moves the
proposed configuration in practice.

    .venv/bin/python bench/policy_features.py --members 192 --per-run 16 --budget 48
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import torch
    from stable_baselines3 import PPO

    from bench.simbench import HELD_OUT, train, tune_sim
    from controller.learn import features
    from controller.learn.env import observation
    from controller.learn.policystore import PolicyStore
    from controller.learn.simfleet import member
    from controller.tuner import RunOptions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=192)
    ap.add_argument("--per-run", type=int, default=16)
    ap.add_argument("--budget", type=int, default=48)
    ap.add_argument("--dims", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = PolicyStore(Path(tmp) / "policies")
        trained = train(args.dims, args.members, args.budget, str(store.root), per_run=args.per_run)
        print(f"trained on {args.members} members in {trained['seconds']} s", file=sys.stderr)
        m = member(HELD_OUT, args.dims)
        spec = m.spec()
        result, trials = tune_sim([m], spec, 3, 0, RunOptions(strategy="ppo", budget=args.budget, seed=0,
                                                                verify_repeats=2, policy_store=store), Path(tmp))
        print(f"held-out member {HELD_OUT}: regret {m.regret(result['best_config']):.3f}", file=sys.stderr)
        model = PPO.load(result["policy"]["saved"], device="cpu")
    obs = []
    for t in trials:
        if t["phase"] == "search":
            reward = t["reward"] if t["reward"] is not None else 0.0
            obs.append(observation(spec.to_unit(t["values"]), t["features"], reward))  # as the policy saw it
    x = torch.tensor(np.asarray(obs, dtype=np.float32), requires_grad=True)
    dist = model.policy.get_distribution(x).distribution
    assert not isinstance(dist, list)  # a Box action space: one Normal
    mean = dist.mean
    grad = torch.autograd.grad(mean.sum(), x)[0].abs().numpy()  # d (sum of action dims) / d input, per obs
    d = spec.action_dim
    spread = np.asarray(obs)[:, d:d + features.SIZE].std(axis=0)
    weight = grad[:, d:d + features.SIZE].mean(axis=0) * spread
    ranked = sorted(zip(features.NAMES, weight, spread), key=lambda r: -r[1])
    print("| feature | sensitivity | spread in the observations |")
    print("|---|---|---|")
    for name, w, s in ranked:
        if s > 0:
            print(f"| `{name}` | {w:.3f} | {s:.3f} |")
    knob = grad[:, :d].mean(axis=0) * np.asarray(obs)[:, :d].std(axis=0)
    print("knob inputs:", json.dumps({k.param: round(float(v), 3) for k, v in zip(spec.action_space, knob)}))


if __name__ == "__main__":
    main()
