"""A spec's ``training_config``: every key is honoured or refused, never ignored.

Checked when the spec loads (so no heavy import here: this runs for `tunefleet plan` too) and
applied by PPO (controller/learn/ppo.py). The defaults are sized for a few dozen evaluations;
docs/strategies.md says why each is what it is.
"""

from __future__ import annotations

from typing import Any

from controller.knob import FieldError

DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-3,
    "n_steps": None,        # fleet steps per update; None: ppo.steps_per_update(budget)
    "batch_size": None,     # None: the whole rollout (n_steps x hosts) in one minibatch
    "n_epochs": 10,
    "gamma": 0.0,
    "gae_lambda": 0.9,
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "net_arch": [32, 32],
    "log_std_init": -0.5,
    "episode_steps": None,  # None: RunOptions.episode_steps
    "action": "config",     # env.py: a whole configuration, or "move": a move from the fleet's best so far
}
ACTIONS = ("move", "config")
# Other names people give the same setting (the seed's, stable-baselines3's, common usage).
ALIASES = {"steps_per_update": "n_steps", "lr": "learning_rate", "epochs": "n_epochs",
           "hidden_sizes": "net_arch", "network": "net_arch", "episode_length": "episode_steps"}
# Accepted with a meaning outside PPO's constructor.
OTHER = ("algorithm", "total_timesteps")


def _number(key: str, v: Any, lo: float, hi: float, *, integer: bool = False, open_lo: bool = False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and float(v) != int(v)):
        raise FieldError(key, f"must be {'an integer' if integer else 'a number'}, got {v!r}")
    if v < lo or v > hi or (open_lo and v == lo):
        raise FieldError(key, f"must be {'>' if open_lo else '>='} {lo:g}"
                         + (f" and <= {hi:g}" if hi != float("inf") else "") + f", got {v!r}")
    return int(v) if integer else float(v)


_INF = float("inf")
_RANGES = {
    "learning_rate": (0.0, 1.0, False, True), "n_epochs": (1, 1000, True, False),
    "n_steps": (1, 1_000_000, True, False), "batch_size": (1, 1_000_000, True, False),
    "gamma": (0.0, 1.0, False, False), "gae_lambda": (0.0, 1.0, False, False),
    "clip_range": (0.0, 1.0, False, True), "ent_coef": (0.0, _INF, False, False),
    "vf_coef": (0.0, _INF, False, False), "max_grad_norm": (0.0, _INF, False, True),
    "log_std_init": (-10.0, 5.0, False, False), "episode_steps": (1, 100_000, True, False),
    "total_timesteps": (1, 10_000_000, True, False),
}


def validate(config: dict | None) -> dict[str, Any]:
    """The effective settings (DEFAULTS overridden by the spec); ValueError (a FieldError naming
    the key, below training_config) on the first bad key."""
    out = dict(DEFAULTS)
    for key, value in (config or {}).items():
        name = ALIASES.get(key, key)
        if name == "algorithm":
            if str(value).lower() != "ppo":
                raise FieldError(key, f"only PPO is trained here, got {value!r} "
                                 "(other searches are --strategy bo or random)")
            continue
        if name == "action":
            if value not in ACTIONS:
                raise FieldError(key, f"must be one of {', '.join(ACTIONS)}, got {value!r}")
            out[name] = value
            continue
        if name == "net_arch":
            out[name] = _net_arch(value)
            continue
        if name not in _RANGES:
            known = sorted(set(DEFAULTS) | set(ALIASES) | set(OTHER))
            raise ValueError(f"unknown key {key!r} (known: {', '.join(known)})")
        lo, hi, integer, open_lo = _RANGES[name]
        out[name] = _number(key, value, lo, hi, integer=integer, open_lo=open_lo)
    return out


def action_mode(config: dict | None) -> str:
    """How PPO reads its actions under a spec's training_config (its ``action``): "config" or "move"."""
    return validate(config)["action"]


def _net_arch(value: Any) -> list[int]:
    """``64`` (one layer), ``[64, 64]``, or ``{"layers": 2, "units": 64}``."""
    if isinstance(value, dict) and set(value) == {"layers", "units"}:
        layers = _number("net_arch.layers", value["layers"], 1, 8, integer=True)
        return [_number("net_arch.units", value["units"], 1, 4096, integer=True)] * layers
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > 8:
        raise FieldError("net_arch", f"1 to 8 layer sizes, got {value!r}")
    return [_number("net_arch", v, 1, 4096, integer=True) for v in items]
