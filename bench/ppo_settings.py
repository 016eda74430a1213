"""PPO's episode length and discount, measured on the formula surface the unit tests use
(tests/unit/surface.py: two log-scaled knobs, an optimum 1000x the original, 3% noise, 3 hosts),
through the real SearchContext / HostEvaluator / FleetVecEnv path.

For each setting and seed: the mean log of the true result over the last third of the search
(how good the configurations PPO proposes have become), and the true result of the trained
policy's mean action from the host's original state (what a later run started from this policy
does first). docs/strategies.md quotes the output.

    .venv/bin/python bench/ppo_settings.py --seeds 24 --budget 48
    .venv/bin/python bench/ppo_settings.py --seeds 24 --budget 48 --moves

`--moves` measures the other action mode (training_config ``action: move``, controller/learn/env.py):
bounded moves from the fleet's best configuration so far instead of whole configurations.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.learn.env import move_point, observation
from controller.learn.search import STRATEGIES
from tests.unit import surface

MOVE_SETTINGS = ({"action": "move", "episode_steps": 2}, {"action": "move", "episode_steps": 4, "gamma": 0.9})
SETTINGS = ({"episode_steps": 1}, {"episode_steps": 2}, {"episode_steps": 4}, {"episode_steps": 8},
            {"episode_steps": 4, "gamma": 0.5}, {"episode_steps": 4, "gamma": 0.9})


def one(config: dict, seed: int, budget: int, folder: Path) -> tuple[float, float]:
    from stable_baselines3 import PPO

    hosts = [surface.SurfaceHost(f"h{i}", width=0.15, seed=seed * 10 + i) for i in range(3)]
    spec = surface.spec(training_config=config)
    saved = folder / f"{seed}.zip"
    ctx = surface.context(hosts, spec, budget, seed=seed, policy_out=saved)
    STRATEGIES["ppo"](ctx)
    trials = ctx.recorder.search_trials()
    late = float(np.mean([math.log(hosts[0].truth(t.values)) for t in trials[-len(trials) // 3:]]))
    unit = spec.to_unit(ctx.originals["h0"])
    action, _ = PPO.load(saved, device="cpu").predict(observation(unit, {}, 0.0), deterministic=True)
    if config.get("action") == "move":  # a move from the originals, the best before anything beats them
        action = move_point(unit, action)
    return late, hosts[0].truth(spec.to_values(action))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=24)
    ap.add_argument("--budget", type=int, default=48)
    ap.add_argument("--moves", action="store_true", help="training_config action: move")
    args = ap.parse_args()
    print("| training_config | late-third mean log(result) | policy mean from the start, median |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for config in (MOVE_SETTINGS if args.moves else SETTINGS):
            rows = [one(config, seed, args.budget, Path(tmp)) for seed in range(args.seeds)]
            late = np.array([r[0] for r in rows])
            se = late.std(ddof=1) / math.sqrt(len(late))
            print(f"| `{json.dumps(config)}` | {late.mean():.2f} ± {1.96 * se:.2f} | "
                  f"{np.median([r[1] for r in rows]):.0f}x |", flush=True)


if __name__ == "__main__":
    main()
