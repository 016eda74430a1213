"""Honest numbers: summaries, A/B comparisons and the fleet-level verdict.

Benchmarks are noisy, so every claim tunefleet makes about a configuration is a
comparison of repeated measurements: the original configuration (arm A, the
baseline) against a candidate (arm B), run interleaved A B A B ... so that slow
drift on the host hits both arms alike.

A change is reported as a percentage where **positive always means better**:

* goal ``"maximize"`` (throughput): ``(median(B) / median(A) - 1) * 100``
* goal ``"minimize"`` (latency):    ``(1 - median(B) / median(A)) * 100``

so +10 means "10 % more transactions per second" or "latency 10 % lower".
The uncertainty of that number is a bootstrap percentile interval, and its
significance is also checked with a two-sided Mann-Whitney U rank test. A result
is called an improvement (or a regression) only when the interval excludes zero
*and* the rank test agrees; otherwise the verdict says plainly that no
significant change was found.

Everything here is a pure function of its inputs and a seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

Goal = Literal["maximize", "minimize"]
IMPROVEMENT, REGRESSION, NO_CHANGE = "improvement", "regression", "no significant change"
_BOOT_CHUNK = 2_000_000  # resampled values held in memory at once
_PERMUTATION_MAX_N = 60  # with ties and at most this many samples, use a permutation test
# Efficiency of the sample median relative to the mean on normal data (2/pi): the
# interval is on medians, so it is what limits the smallest change we can confirm.
_MEDIAN_EFFICIENCY = 2.0 / math.pi


@dataclass(frozen=True)
class Summary:
    """Repeated measurements of one configuration on one host.

    ``stdev`` is the sample standard deviation (n-1 denominator) and ``cv`` the
    coefficient of variation stdev/mean, a fraction (0.03 = 3 % run-to-run noise).
    Both are 0 when fewer than two samples exist: the noise is then unknown, not zero.
    """

    n: int
    median: float
    mean: float
    stdev: float
    cv: float
    min: float
    max: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """The verdict on a candidate (best) configuration against the baseline.

    ``change_pct`` and the interval ``[ci_low_pct, ci_high_pct]`` are in percent,
    positive = better for ``goal`` (see the module docstring). ``p_value`` is from
    the rank test. ``repeats`` is the number of samples per arm (the smaller arm if
    they differ; the total across hosts for a fleet comparison).
    """

    baseline_median: float
    best_median: float
    change_pct: float
    ci_low_pct: float
    ci_high_pct: float
    p_value: float
    significant: bool
    repeats: int
    goal: str
    verdict: str

    def to_dict(self) -> dict:
        """Plain JSON-ready values; this is ``verification`` in result.json."""
        return asdict(self)


def _array(samples: Sequence[float], what: str) -> np.ndarray:
    a = np.asarray(samples, dtype=float).ravel()
    if a.size == 0:
        raise ValueError(f"{what}: no samples")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: samples must be finite numbers")
    return a


def _check_goal(goal: str) -> None:
    if goal not in ("maximize", "minimize"):
        raise ValueError(f"goal must be 'maximize' or 'minimize', not {goal!r}")


def summarize(samples: Sequence[float]) -> Summary:
    """Describe repeated measurements: n, median, mean, stdev, cv, min and max."""
    a = _array(samples, "summarize")
    mean = float(a.mean())
    stdev = float(a.std(ddof=1)) if a.size > 1 else 0.0
    cv = 0.0 if stdev == 0.0 else (stdev / abs(mean) if mean != 0 else math.inf)
    return Summary(int(a.size), float(np.median(a)), mean, stdev, cv, float(a.min()), float(a.max()))


def _to_pct(ratio: np.ndarray | float, goal: str) -> np.ndarray | float:
    return (ratio - 1.0) * 100.0 if goal == "maximize" else (1.0 - ratio) * 100.0


def _boot_medians(a: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_boot`` resamples (with replacement) of ``a``, in bounded memory."""
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    rows = max(1, _BOOT_CHUNK // a.size)
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, a.size, size=(stop - start, a.size))
        out[start:stop] = np.median(a[idx], axis=1)
    return out


def _rank_p_value(baseline: np.ndarray, candidate: np.ndarray, seed: int) -> float:
    """Two-sided Mann-Whitney U p-value; 1.0 when the two arms cannot be told apart.

    Without ties scipy's default is exact for small samples. With ties it would fall
    back to a normal approximation that is too optimistic for a handful of samples
    (3 vs 3 constants gives p = 0.047, while no split of 6 values can reach 0.1), so
    small tied samples use a permutation test instead (exact up to 9999 splits,
    seeded Monte Carlo beyond).
    """
    if baseline.size + candidate.size > _PERMUTATION_MAX_N or (
        np.unique(np.concatenate([baseline, candidate])).size == baseline.size + candidate.size
    ):
        method: object = "auto"
    else:
        method = sps.PermutationMethod(n_resamples=9999, rng=np.random.default_rng(seed))
    p = float(sps.mannwhitneyu(candidate, baseline, alternative="two-sided", method=method).pvalue)
    return 1.0 if math.isnan(p) else min(1.0, p)


def _comparison(
    medians: tuple[float, float], ratio: float, boot_ratios: np.ndarray, p: float,
    repeats: int, goal: str, confidence: float,
) -> Comparison:
    """Turn a point ratio, its bootstrap replicates and a p-value into a verdict."""
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = (float(x) for x in np.nanpercentile(_to_pct(boot_ratios, goal), [tail, 100.0 - tail]))
    significant = bool((low > 0 or high < 0) and p < 1.0 - confidence)
    verdict = NO_CHANGE if not significant else IMPROVEMENT if low > 0 else REGRESSION
    return Comparison(
        baseline_median=float(medians[0]), best_median=float(medians[1]),
        change_pct=float(_to_pct(ratio, goal)), ci_low_pct=low, ci_high_pct=high,
        p_value=float(p), significant=significant, repeats=int(repeats), goal=goal, verdict=verdict,
    )


def relative_change(
    baseline: Sequence[float], candidate: Sequence[float], goal: Goal = "maximize",
    confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0,
) -> Comparison:
    """Compare the candidate's samples with the baseline's on one host.

    ``change_pct`` is the relative change of the medians, positive = better for
    ``goal``. The interval is a percentile bootstrap of that same statistic, each
    arm resampled independently (``n_boot`` times, deterministic for a ``seed``).
    ``significant`` requires the interval to exclude 0 and the two-sided
    Mann-Whitney p-value to be below ``1 - confidence``. With one sample per arm
    the interval is a single point and p = 1: never significant.
    """
    _check_goal(goal)
    base, cand = _array(baseline, "baseline"), _array(candidate, "candidate")
    base_med, cand_med = float(np.median(base)), float(np.median(cand))
    if base_med <= 0:
        raise ValueError("baseline median must be positive for a relative change")
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = _boot_medians(cand, n_boot, rng) / _boot_medians(base, n_boot, rng)
    p = _rank_p_value(base, cand, seed)
    repeats = min(base.size, cand.size)
    return _comparison((base_med, cand_med), cand_med / base_med, ratios, p, repeats, goal, confidence)


def _van_elteren_p(strata: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Two-sided p-value of the van Elteren test: a rank-sum test within each host,
    combined across hosts with weights 1/(N_h + 1), normal approximation with a
    tie correction. Ranks never compare samples of different hosts, so hosts of
    different speed do not blur the comparison."""
    stat = expected = variance = 0.0
    for base, cand in strata:
        n, m = cand.size, base.size
        total = n + m
        ranks = sps.rankdata(np.concatenate([cand, base]))
        _, counts = np.unique(ranks, return_counts=True)
        ties = float(np.sum(counts**3 - counts))
        weight = 1.0 / (total + 1)
        stat += weight * float(ranks[:n].sum())
        expected += weight * n * (total + 1) / 2.0
        if total > 1:
            variance += weight**2 * n * m / 12.0 * ((total + 1) - ties / (total * (total - 1)))
    if variance <= 0:
        return 1.0
    z = (stat - expected) / math.sqrt(variance)
    return float(min(1.0, 2.0 * sps.norm.sf(abs(z))))


def fleet_change(
    per_host_samples: Mapping[str, tuple[Sequence[float], Sequence[float]]], goal: Goal = "maximize",
    confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0,
) -> Comparison:
    """The fleet-level verdict from ``{host: (baseline_samples, candidate_samples)}``.

    Hosts differ in speed, so nothing is compared across hosts. Each host gives its
    own ratio median(candidate)/median(baseline); the fleet ratio is the geometric
    mean of those ratios (every host weighs the same), turned into ``change_pct``
    as in :func:`relative_change`. The interval is a stratified bootstrap: each
    replicate resamples both arms within every host and recomputes the geometric
    mean, so each host's own baseline uncertainty is carried along. The p-value is
    the van Elteren stratified rank test (for one host, the same test as
    :func:`relative_change`). ``baseline_median`` and ``best_median``
    are the medians over hosts of each host's median, in the metric's units (a
    typical host; ``change_pct`` is not their ratio). ``repeats`` is the number of
    samples per arm summed over hosts.
    """
    _check_goal(goal)
    if not per_host_samples:
        raise ValueError("fleet_change: no hosts")
    rng = np.random.default_rng(seed)
    strata: list[tuple[np.ndarray, np.ndarray]] = []
    log_ratio = 0.0
    boot_log_ratio = np.zeros(n_boot)
    for host in sorted(per_host_samples):  # sorted: the same seed gives the same draws
        base_s, cand_s = per_host_samples[host]
        base, cand = _array(base_s, f"{host} baseline"), _array(cand_s, f"{host} candidate")
        if np.median(base) <= 0 or np.median(cand) <= 0:
            raise ValueError(f"{host}: medians must be positive for a relative change")
        strata.append((base, cand))
        log_ratio += math.log(np.median(cand) / np.median(base))
        with np.errstate(divide="ignore", invalid="ignore"):
            boot_log_ratio += np.log(_boot_medians(cand, n_boot, rng) / _boot_medians(base, n_boot, rng))
    k = len(strata)
    medians = (
        float(np.median([np.median(b) for b, _ in strata])),
        float(np.median([np.median(c) for _, c in strata])),
    )
    repeats = sum(min(b.size, c.size) for b, c in strata)
    p = _rank_p_value(*strata[0], seed) if k == 1 else _van_elteren_p(strata)
    return _comparison(medians, math.exp(log_ratio / k), np.exp(boot_log_ratio / k), p, repeats, goal, confidence)


def interleaved_schedule(repeats: int, first: Literal["A", "B"] = "A") -> list[str]:
    """The run order for a verification: ``repeats`` runs per arm, in counterbalanced pairs.

    "A" is the original (baseline) configuration and "B" the candidate. Pairs alternate their
    order (A B, B A, A B, ...: ABBA), so a steady drift over the verification (the machine
    warming, other work ending) lands on both arms alike: with an even number of pairs it
    cancels within the host, with an odd number the last pair leaves one arm a third of a step
    earlier on average instead of a whole step (A B A B ...). Giving half of the hosts
    ``first="B"`` (e.g. by host index parity) evens out that remainder across the fleet.
    """
    if repeats < 0:
        raise ValueError("repeats must be >= 0")
    if first not in ("A", "B"):
        raise ValueError("first must be 'A' or 'B'")
    other = "B" if first == "A" else "A"
    return [label for i in range(repeats) for label in ((first, other) if i % 2 == 0 else (other, first))]


def noise_warning(summary: Summary, min_effect_pct: float, repeats: int | None = None) -> str | None:
    """A plain sentence when the baseline noise hides the effect being sought, else None.

    The smallest change an A/B test with ``repeats`` runs per arm (default: as
    many as the baseline has) finds 80 % of the time at the 5 % level is about
    ``2.8 * cv * sqrt(2 / repeats / 0.64)`` (normal noise; 0.64 = 2/pi is the
    efficiency of a median against a mean, and the interval is on medians). With
    a 3 % CV and 10 repeats per arm that is about 4.7 %, which simulation confirms.
    A warning is given when that exceeds ``min_effect_pct``, or when fewer than two
    samples leave the noise unknown.
    """
    if min_effect_pct <= 0:
        raise ValueError("min_effect_pct must be positive")
    n = summary.n if repeats is None else repeats
    if summary.n < 2:
        return "The baseline has fewer than 2 repeats, so its run-to-run noise is unknown; no change can be verified."
    if n < 2:
        return "With fewer than 2 repeats per arm no change can be verified."
    cv_pct = summary.cv * 100.0
    detectable = 2.8 * cv_pct * math.sqrt(2.0 / n) / math.sqrt(_MEDIAN_EFFICIENCY)
    if detectable <= min_effect_pct:
        return None
    needed = math.ceil(2.0 * (2.8 * cv_pct / min_effect_pct) ** 2 / _MEDIAN_EFFICIENCY)
    return (
        f"The baseline varies by {cv_pct:.1f}% from run to run; with {n} repeats per arm only changes "
        f"larger than about {detectable:.1f}% can be told apart from noise, but the effect sought is "
        f"{min_effect_pct:g}%. Use about {needed} repeats per arm, or expect 'no significant change'."
    )


def median_interval(
    per_host_samples: Mapping[str, Sequence[float]], confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0,
) -> tuple[float, float, float]:
    """The median of every host's samples pooled, and a bootstrap percentile interval for it that
    resamples within each host (a host's share of the pool stays fixed). For a bound on a metric
    that must hold on every host alike (p99 latency under 20 ms): (median, low, high)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    arrays = [_array(per_host_samples[h], h) for h in sorted(per_host_samples)]
    if not arrays:
        raise ValueError("median_interval: no hosts")
    pooled = np.concatenate(arrays)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, pooled.size))
    col = 0
    for a in arrays:
        boots[:, col:col + a.size] = a[rng.integers(0, a.size, size=(n_boot, a.size))]
        col += a.size
    medians = np.median(boots, axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = (float(x) for x in np.percentile(medians, [tail, 100.0 - tail]))
    return float(np.median(pooled)), low, high
