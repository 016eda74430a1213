"""An additive Gaussian process over the action box, for Bayesian optimization with few evaluations.

Kernel knobs mostly act through their own mechanism: the accept queue drops connections until it
is long enough, a socket buffer limits the window until it covers the bandwidth-delay product, a
FIN timeout piles up orphans. On the log of the benchmark's ratio to its baseline (the reward) such
effects add. A model that assumes exactly that, one smooth function per knob summed (Kandasamy et
al., "High dimensional Bayesian optimisation and bandits via additive models", ICML 2015), learns
d one-dimensional curves instead of one d-dimensional surface: every evaluation informs every
curve, so 24 evaluations say something about 8 knobs, where a full GP or TPE in 8 dimensions is
still close to random search.

- ``f(x) = sum_k f_k(x_k)``, each ``f_k`` a GP with a Matern 5/2 kernel with its own amplitude
  (how much the knob matters) and length scale (how sharply its effect changes), plus
  observation noise. The hyperparameters maximize the marginal likelihood with weak priors, so a
  handful of points does not make a knob's curve a spike.
- A candidate is a Thompson sample: one draw of all the curves from their joint posterior on a
  grid of each knob's axis, each knob set where its curve peaks (the draw's peak, since the draw
  is a sum). Independent draws give the hosts of one round different candidates without
  pretending to know the results still running. In the run's last round one host tries the
  posterior mean's peak instead: the model's best guess is worth measuring before the choice.
- Failed evaluations (the benchmark failed, a value was refused) enter as a value below the worst
  success, so the curves of the knobs involved bend away from the failing region; their reward
  (FAILURE_REWARD, 10^4 times worse) would otherwise dwarf every real difference.
- Until a point besides the known ones has been measured, candidates are a Latin hypercube.

Interactions the sum cannot express (two knobs that form one queue, buffers that together exhaust
memory) are left to the failure handling and to the noise term: the strategy benchmark's family has
both, and docs/strategies.md gives what the model achieves on it.
"""

from __future__ import annotations

import math
from typing import Hashable

import numpy as np

GRID = 65            # points per knob axis on which the curves are drawn (a 1/32 step of the box)
FAILED_BELOW = 0.5   # a failure counts this many standard deviations of the successes below the worst one


def matern52(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    r = np.abs(a[:, None] - b[None, :]) * (math.sqrt(5.0) / length)
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


class AdditiveGP:
    """The posterior of ``sum_k f_k(x_k)`` given points ``x`` (n x d in [-1, 1]) and values ``y``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None):
        self.x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        self.mean, self.scale = float(y.mean()), float(y.std()) or 1.0
        self.y = (y - self.mean) / self.scale
        self.n, self.dim = self.x.shape
        self.amplitudes, self.lengths, self.noise = self._fit()
        self._factor()

    # --- hyperparameters ----------------------------------------------------------------------

    def _gram(self, amplitudes, lengths) -> np.ndarray:
        k = np.zeros((self.n, self.n))
        for j in range(self.dim):
            k += amplitudes[j] * matern52(self.x[:, j], self.x[:, j], lengths[j])
        return k

    def _neg_log_posterior(self, theta: np.ndarray) -> float:
        d = self.dim
        amplitudes, lengths, noise = np.exp(theta[:d]), np.exp(theta[d:2 * d]), math.exp(theta[-1])
        k = self._gram(amplitudes, lengths) + (noise + 1e-8) * np.eye(self.n)
        try:
            chol = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            return 1e10
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, self.y))
        nll = 0.5 * self.y @ alpha + np.log(np.diag(chol)).sum()
        # weak priors, in log space: amplitudes around 1/d of the variance, length ~0.5, noise ~0.05
        prior = ((theta[: self.dim] - math.log(1.0 / self.dim)) ** 2).sum() / (2 * 2.0 ** 2)
        prior += ((theta[d:2 * d] - math.log(0.5)) ** 2).sum() / (2 * 0.75 ** 2)
        prior += (theta[-1] - math.log(0.05)) ** 2 / (2 * 1.5 ** 2)
        return float(nll + prior)

    def _fit(self):
        from scipy.optimize import minimize

        d = self.dim
        bounds = [(math.log(1e-4), math.log(10.0))] * d + [(math.log(0.05), math.log(4.0))] * d \
            + [(math.log(1e-4), math.log(1.0))]
        starts = [np.array([math.log(1.0 / d)] * d + [math.log(0.5)] * d + [math.log(0.05)]),
                  np.array([math.log(1.0 / d)] * d + [math.log(0.2)] * d + [math.log(0.01)])]
        best = None
        for start in starts:
            res = minimize(self._neg_log_posterior, start, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 200})
            if best is None or res.fun < best.fun:
                best = res
        theta = best.x
        return np.exp(theta[:d]), np.exp(theta[d:2 * d]), float(math.exp(theta[-1]))

    def _factor(self) -> None:
        k = self._gram(self.amplitudes, self.lengths) + (self.noise + 1e-8) * np.eye(self.n)
        self.chol = np.linalg.cholesky(k)
        self.alpha = np.linalg.solve(self.chol.T, np.linalg.solve(self.chol, self.y))

    # --- per-knob posteriors ------------------------------------------------------------------

    def component(self, j: int, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of knob j's curve f_j on ``grid`` (standardized units)."""
        cross = self.amplitudes[j] * matern52(grid, self.x[:, j], self.lengths[j])
        mean = cross @ self.alpha
        v = np.linalg.solve(self.chol, cross.T)
        cov = self.amplitudes[j] * matern52(grid, grid, self.lengths[j]) - v.T @ v
        return mean, cov

    def sample_argmax(self, grid: np.ndarray, rng: np.random.Generator, draws: int) -> np.ndarray:
        """Thompson sampling: ``draws`` points, each where one joint posterior draw of the curves
        peaks. A draw is a sum of curves, so its peak is each curve's peak."""
        return grid[np.argmax(self.sample_curves(grid, rng, draws), axis=2)]

    def sample_curves(self, grid: np.ndarray, rng: np.random.Generator, draws: int) -> np.ndarray:
        """``draws`` samples of every curve on ``grid`` (draws x d x g) from their joint posterior
        (the data ties the curves together, since only their sum was observed), drawn by pathwise
        conditioning (Wilson et al. 2020): a prior draw of each curve on the grid and at the data,
        then moved by the kernel's regression of what the draw got wrong at the data. Linear in
        the number of knobs."""
        g, n = grid.size, self.n
        prior_at_data = np.zeros((draws, n))
        on_grid = []
        for j in range(self.dim):
            z = np.concatenate([grid, self.x[:, j]])
            w, vec = np.linalg.eigh(self.amplitudes[j] * matern52(z, z, self.lengths[j]))
            f = rng.standard_normal((draws, g + n)) @ (vec * np.sqrt(np.clip(w, 0.0, None))).T
            on_grid.append(f[:, :g])
            prior_at_data += f[:, g:]
        noise = rng.standard_normal((draws, n)) * math.sqrt(self.noise + 1e-8)
        miss = self.y[None, :] - prior_at_data - noise
        weights = np.linalg.solve(self.chol.T, np.linalg.solve(self.chol, miss.T))          # n x draws
        out = np.empty((draws, self.dim, g))
        for j in range(self.dim):
            cross = self.amplitudes[j] * matern52(grid, self.x[:, j], self.lengths[j])      # g x n
            out[:, j] = on_grid[j] + (cross @ weights).T
        return out

    def mean_argmax(self, grid: np.ndarray) -> np.ndarray:
        return np.array([grid[np.argmax(self.component(j, grid)[0])] for j in range(self.dim)])


class AdditiveStudy:
    """Maximize over [-1, 1]^dim with an additive GP; the ask/tell surface of ``bo.BoxStudy``."""

    def __init__(self, dim: int, seed: int = 0, n_startup: int = 4, failure_value: float | None = None):
        self.dim = dim
        self.rng = np.random.default_rng(seed)
        self.n_startup = n_startup
        self.failure_value = failure_value       # a told value at or below it is a failure
        self.grid = np.linspace(-1.0, 1.0, GRID)
        self.points: list[np.ndarray] = []
        self.values: list[float] = []
        self.failed: list[bool] = []
        self._pending: dict[Hashable, np.ndarray] = {}
        self._known = 0

    def add_known(self, point, value: float, **attrs) -> bool:
        p = np.asarray(point, dtype=float).reshape(-1)
        if p.shape != (self.dim,) or not np.all(np.isfinite(p)):
            return False
        self._add(np.clip(p, -1.0, 1.0), value)
        self._known += 1
        return True

    def _add(self, p: np.ndarray, value: float) -> None:
        failed = self.failure_value is not None and value <= self.failure_value
        self.points.append(p)
        self.values.append(float(value))
        self.failed.append(failed)

    def _training_set(self) -> tuple[np.ndarray, np.ndarray] | None:
        ok = [v for v, f in zip(self.values, self.failed) if not f]
        if len(ok) < 2:
            return None
        spread = float(np.std(ok)) or 1.0
        floor = min(ok) - FAILED_BELOW * spread
        y = np.array([floor if f else v for v, f in zip(self.values, self.failed)])
        return np.array(self.points), y

    def ask(self, keys, last: bool = False) -> dict[Hashable, np.ndarray]:
        keys = list(keys)
        for key in keys:
            if key in self._pending:
                raise ValueError(f"{key!r} already has a pending point")
        # the model takes over once it has the known points and a first round's worth besides
        data = self._training_set() if len(self.values) > self.n_startup else None
        if data is None:
            points = self._latin(len(keys))
        else:
            gp = AdditiveGP(*data)
            points = gp.sample_argmax(self.grid, self.rng, len(keys))
            if last:  # the run's last round: one host tries what the model believes is best
                points[0] = gp.mean_argmax(self.grid)
        out = {}
        for key, p in zip(keys, points):
            self._pending[key] = p
            out[key] = p.copy()
        return out

    def _latin(self, n: int) -> np.ndarray:
        cells = np.stack([self.rng.permutation(n) for _ in range(self.dim)], axis=1)
        return -1.0 + 2.0 * (cells + self.rng.uniform(size=(n, self.dim))) / n

    def tell(self, key: Hashable, value: float | None) -> None:
        p = self._pending.pop(key)
        if value is not None:
            self._add(p, value)

    @property
    def completed(self) -> int:
        return len(self.values) - self._known
