"""Bayesian optimization with optuna over the spec's action box.

One study holds every evaluation of the run. Its search space is the same flat box [-1, 1]^d
the PPO policy acts in, so the spec's mapping (integers rounded, log scales, choices, vector
components) is reused unchanged and every strategy proposes values the same way.

Each round asks the study once per live host, so the hosts evaluate different candidates at
the same time: the sampler sees the trials still running (TPE's constant liar, GP's pending
points) and steers away from them. Rewards are relative to each host's own baseline, so the
hosts' results share one study. The host's original configuration was measured in the baseline
phase, reward 0 by definition, and enters the study as a known point before the first ask; so do
the spec's expert priors (initial_candidates), which are evaluated first, with what they scored.

A candidate the budget or a dropped host left unevaluated is told as failed (it is no result);
an evaluation that failed on the host scores FAILURE_REWARD, as it does for every strategy.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from controller.learn.evaluation import FAILURE_REWARD
from controller.learn.search import SearchContext, evaluate_priors
from controller.learn.strategies import register

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import Trial

K = TypeVar("K", bound=Hashable)

SAMPLERS = ("tpe", "gp")


def _param(i: int) -> str:
    return f"a{i:02d}"


def _constraint_keys(values) -> dict[str, float]:
    """One optuna constraint per spec constraint (<= 0 where it holds): optuna's samplers model
    which points keep them, instead of seeing only a penalized reward."""
    return {f"c{i}": float(v) for i, v in enumerate(values or ())}


def make_sampler(kind: str, seed: int, n_startup: int):
    import optuna

    if kind == "tpe":
        # multivariate: vector knobs (tcp_rmem's three numbers) move together, not one at a time
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup, constant_liar=True,
                                          multivariate=True)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup, deterministic_objective=False)
    raise ValueError(f"unknown sampler {kind!r} (known: {', '.join(SAMPLERS)})")


class BoxStudy:
    """An optuna study over [-1, 1]^dim (maximize) that hands out several points at once.

    ``ask(keys)`` returns one point per key and keeps those trials pending, so the sampler
    proposes the next key's point knowing the earlier ones are being evaluated;
    ``tell(key, value)`` completes a key's trial (None: it was never evaluated).
    """

    def __init__(self, dim: int, seed: int = 0, n_startup: int = 4, sampler: str = "tpe", constrained: bool = False):
        import optuna
        from optuna.distributions import FloatDistribution

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.dim = dim
        self.distributions: dict[str, BaseDistribution] = {_param(i): FloatDistribution(-1.0, 1.0) for i in range(dim)}
        with _quiet():
            self.study = optuna.create_study(direction="maximize", sampler=make_sampler(sampler, seed, n_startup))
        self.constrained = constrained
        self._pending: dict[Hashable, Trial] = {}

    def add_known(self, point, value: float, constraints=None, **attrs) -> bool:
        """Record a point measured elsewhere (e.g. the baseline). False when it is not in the box."""
        import optuna

        p = np.asarray(point, dtype=float).reshape(-1)
        if p.shape != (self.dim,) or not np.all(np.isfinite(p)):
            return False
        params = {_param(i): float(x) for i, x in enumerate(np.clip(p, -1.0, 1.0))}
        bounds = _constraint_keys(constraints or [0.0]) if self.constrained else None
        self.study.add_trial(optuna.trial.create_trial(params=params, distributions=self.distributions,
                                                       value=float(value), user_attrs=attrs, constraints=bounds))
        return True

    def ask(self, keys: Iterable[K]) -> dict[K, np.ndarray]:
        out = {}
        with _quiet():
            for key in keys:
                if key in self._pending:
                    raise ValueError(f"{key!r} already has a pending point")
                trial = self.study.ask(self.distributions)
                trial.set_user_attr("key", str(key))
                self._pending[key] = trial
                out[key] = np.array([trial.params[_param(i)] for i in range(self.dim)], dtype=np.float64)
        return out

    def tell(self, key: Hashable, value: float | None, constraints=None) -> None:
        """Complete a key's trial; ``constraints``: one number per constraint, <= 0 where it held."""
        from optuna.trial import TrialState

        trial = self._pending.pop(key)
        if value is None:
            self.study.tell(trial, state=TrialState.FAIL)
            return
        if self.constrained:
            for key, v in _constraint_keys(constraints or [0.0]).items():
                trial.set_constraint(key, v)
        self.study.tell(trial, float(value))

    @property
    def completed(self) -> int:
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


@contextlib.contextmanager
def _quiet():
    """Without optuna's ExperimentalWarning (multivariate TPE, GP): a note for library users, not ours."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@register("bo")
def bo_search(ctx: SearchContext, sampler: str = "tpe") -> None:
    """Spend ctx.budget evaluations on optuna's suggestions, one candidate per live host per round."""
    evaluate_priors(ctx)
    constraints = list(getattr(ctx.spec, "constraints", None) or ())
    study = BoxStudy(ctx.spec.action_dim, seed=ctx.seed, n_startup=max(4, len(ctx.live())), sampler=sampler,
                     constrained=bool(constraints))
    for t in ctx.recorder.search_trials():  # the priors as measured; resumed: every recorded evaluation
        reward = t.reward if t.ok and t.reward is not None else FAILURE_REWARD
        study.add_known(ctx.spec.to_unit(t.values), reward, constraints=violations(t, constraints), origin="prior",
                        host=t.host)
    known = set()
    for ev in ctx.live():  # the baseline measured each host's originals: reward 0 by definition
        originals = ctx.originals[ev.name]
        if not all(k.contains(originals.get(k.param, "")) for k in ctx.spec.action_space):
            continue  # outside the searched box: its clipped image was never measured
        point = np.asarray(ctx.spec.to_unit(originals), dtype=float)
        if tuple(np.round(point, 6)) not in known:
            known.add(tuple(np.round(point, 6)))
            study.add_known(point, 0.0, origin="baseline", host=ev.name)

    for _ in range(ctx.budget + 1):  # every round spends an evaluation or raises: a bound, not a guess
        if ctx.remaining <= 0:
            break
        points = study.ask([ev.name for ev in ctx.live()[: ctx.remaining]])
        results = ctx.evaluate_round({name: ctx.spec.to_values(p) for name, p in points.items()})
        for name in points:
            got = results.get(name)
            if got is None:
                study.tell(name, None)
            else:
                study.tell(name, got.reward if got.ok and got.reward is not None else FAILURE_REWARD,
                           violations(got, constraints))


def violations(trial, constraints) -> list[float]:
    """One number per constraint for optuna: how far past its limit the run was (a log ratio,
    > 0), or minus how far inside (<= 0 holds). A failed run breaks them all."""
    if not constraints:
        return []
    if not trial.ok:
        return [1.0] * len(constraints)
    out = []
    for c in constraints:
        value = trial.observed.get(c.metric)
        if value is None:
            out.append(1.0)
            continue
        gap = c.excess(value)
        out.append(gap if gap > 0 else -abs(np.log(max(abs(value), 1e-9) / max(abs(c.limit), 1e-9))))
    return out
