"""Which knobs mattered: a share of the reward's variation for each knob.

Method (forward selection of one-way effects, chance-corrected; numpy/scipy only):

1. Keep the successful trials (``reward`` not None and finite).
2. Turn each knob into features. A sysctl value is text: a number ("1024") is one
   numeric feature; a vector ("4096 16384 65536") gives one numeric feature per
   component (``knob[0]``, ``knob[1]``, ...); anything else ("cubic", or vectors of
   varying length) is one categorical feature. Trials where a knob was not set
   form a group of their own.
3. Group the trials by each feature: by its exact value when it takes few values,
   otherwise into about sqrt(n) (2 to 5) equal-count bins by rank. Ranks make
   this blind to scale, so a log-scale knob needs no special care, and bins let
   an optimum in the middle of a range count as much as a monotone trend. A
   numeric feature is also tried as a threshold: the trials below a cut against
   those above it, at every cut that leaves two trials on each side. A search
   that closes in fast leaves a few bad settings among many good ones, which
   equal-count bins mix; the cut separates them.
4. Score a grouping with omega squared, the fraction of variance explained by
   the groups *beyond what a chance grouping explains*:
   ``(SS_between - (k - 1) * MS_within) / (SS_total + MS_within)``, floored at 0
   (plain eta squared would credit a useless knob ``(k - 1) / (n - 1)``).
5. Greedily take the feature that explains most, credit it with that fraction
   of the reward's total variance, subtract its group means from the reward,
   and repeat on what is left. Stop when the best remaining feature fails an
   F-test at ``ALPHA`` (Bonferroni over the features still in the race). The
   residual step keeps a knob that merely happened to be unbalanced against the
   driving knob in a small sample from taking credit for it; the test keeps
   chance out of the ranking: with pure-noise rewards the answer is ``{}``
   about 95 % of the time. A feature tried several ways (bins, cuts) pays for
   each in its p-value (Bonferroni again).
6. A knob's score is the sum of its features' credits; ``knob_importance``
   divides by the total so the shares sum to 1.

Limits worth saying out loud: only main effects are modelled, so an effect that
exists only in combination with another knob is missed, and of two knobs that
were always moved together the first one picked takes the credit. With a few
dozen trials only strong effects pass the test; ``{}`` then means "not enough
evidence", not "nothing matters".

Why not optuna's evaluators: fANOVA and mean-decrease-impurity need
scikit-learn, which tunefleet does not depend on; PED-ANOVA answers a different
question (what separates the top 10 % of trials), needs a few trials inside that
top 10 %, and on 24 synthetic trials gave a pure-noise knob a 14 % share on
average (this method: below 1 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import f as f_dist

MIN_TRIALS = 4  # fewer successful trials than this: no importance is reported
MIN_SIDE = 2    # a threshold leaves at least this many trials on each side
MAX_BINS = 5
ALPHA = 0.05  # a knob is credited only if its F-test passes at this level (Bonferroni)


def _features(knob: str, raw: list[Any]) -> dict[str, np.ndarray]:
    """Split one knob's values (one per trial, None when unset) into named features.

    Numeric features are float arrays with NaN for unset; a categorical feature
    is an object array of strings with None for unset.
    """
    parts: list[list[float] | None] = []
    for value in raw:
        if value is None:
            parts.append(None)
            continue
        try:
            parts.append([float(x) for x in str(value).split()])
        except ValueError:
            break
    lengths = {len(p) for p in parts if p is not None}
    if len(parts) == len(raw) and len(lengths) == 1 and 0 not in lengths:
        width = lengths.pop()
        table = np.array([p if p is not None else [math.nan] * width for p in parts], dtype=float)
        if width == 1:
            return {knob: table[:, 0]}
        return {f"{knob}[{i}]": table[:, i] for i in range(width)}
    labels = [None if v is None else " ".join(str(v).split()) for v in raw]
    return {knob: np.array(labels, dtype=object)}


def _groupings(x: np.ndarray) -> list[np.ndarray]:
    """Every way a feature is tried: its groups (below), then, for a numeric feature with more
    distinct values than groups, each threshold with MIN_SIDE trials on either side (unset values
    stay a group of their own)."""
    out = [_groups(x)]
    if x.dtype == object:
        return out
    present = ~np.isnan(x)
    values = np.sort(x[present])
    distinct = np.unique(values)
    if distinct.size <= np.unique(out[0][present]).size:
        return out
    for cut in (distinct[:-1] + distinct[1:]) / 2.0:
        if MIN_SIDE <= np.searchsorted(values, cut) <= values.size - MIN_SIDE:
            out.append(np.where(present, (x > cut).astype(int), -1))
    return out


def _groups(x: np.ndarray) -> np.ndarray:
    """Integer group labels of one feature over all trials; unset values form their own group."""
    groups = np.full(x.size, -1)
    if x.dtype == object:
        present = np.array([v is not None for v in x], dtype=bool)
        if present.any():
            groups[present] = np.unique(x[present].astype(str), return_inverse=True)[1]
        return groups
    present = ~np.isnan(x)
    values = x[present]
    if values.size:
        distinct, inverse = np.unique(values, return_inverse=True)
        n_bins = max(2, min(MAX_BINS, round(math.sqrt(values.size))))
        if distinct.size <= n_bins:
            groups[present] = inverse
        else:  # equal-count bins by rank; equal values share a rank, hence a bin
            groups[present] = (np.searchsorted(np.sort(values), values, side="left") * n_bins) // values.size
    return groups


def omega_squared(groups: np.ndarray, y: np.ndarray, df_spent: int = 1) -> float:
    """Share of the variation of ``y`` around its mean explained by ``groups`` beyond chance (>= 0).

    ``df_spent`` counts the parameters already fitted to ``y`` (1: its mean; more
    when ``y`` are residuals of earlier steps), which the chance level must allow for.
    """
    return _anova(groups, y, df_spent)[0]


def _anova(groups: np.ndarray, y: np.ndarray, df_spent: int) -> tuple[float, float]:
    """(omega squared, F-test p-value) of a one-way grouping of ``y``."""
    labels, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    k, n = labels.size, y.size
    df_within = n - df_spent - (k - 1)
    ss_total = float(np.sum((y - y.mean()) ** 2))
    if k < 2 or df_within <= 0 or ss_total <= 0:
        return 0.0, 1.0
    means = np.bincount(inverse, weights=y) / counts
    ss_between = float(np.sum(counts * (means - y.mean()) ** 2))
    ss_within = max(ss_total - ss_between, 0.0)
    ms_within = ss_within / df_within
    omega = max(0.0, (ss_between - (k - 1) * ms_within) / (ss_total + ms_within))
    if ss_within == 0:
        return omega, 0.0
    p = float(f_dist.sf(ss_between / (k - 1) / ms_within, k - 1, df_within))
    return omega, p


def _successful(trials: Sequence[dict]) -> list[dict]:
    return [t for t in trials if t.get("reward") is not None and math.isfinite(float(t["reward"]))]


def knob_scores(trials: Sequence[dict], knob_names: Sequence[str]) -> dict[str, float]:
    """The fraction of the reward's variance each knob explains beyond chance
    (summed over a vector knob's components), not normalized.

    Their sum says how much of the variation the knobs explain at all; the rest is
    benchmark noise or interactions. ``{}`` when fewer than ``MIN_TRIALS`` trials
    succeeded or the reward never varied.
    """
    ok = _successful(trials)
    if len(ok) < MIN_TRIALS:
        return {}
    y = np.array([float(t["reward"]) for t in ok])
    if np.ptp(y) == 0:
        return {}
    features: dict[str, tuple[str, list[np.ndarray]]] = {}
    for knob in knob_names:
        raw = [(t.get("values") or {}).get(knob) for t in ok]
        for name, x in _features(knob, raw).items():
            features[name] = (knob, _groupings(x))
    scores = dict.fromkeys(knob_names, 0.0)
    ss_total = float(np.sum((y - y.mean()) ** 2))
    residual, df_spent = y - y.mean(), 1
    while features:
        ss_residual = float(np.sum((residual - residual.mean()) ** 2))
        tests = {name: _best_grouping(gs, residual, df_spent) for name, (_, gs) in features.items()}
        best = max(tests, key=lambda name: (tests[name][0], name))
        omega, p, groups = tests[best]
        if omega <= 0 or p >= ALPHA / len(tests):  # Bonferroni over the candidates
            break
        gain = omega * ss_residual / ss_total
        knob, _ = features.pop(best)
        scores[knob] += gain
        labels, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
        residual = residual - (np.bincount(inverse, weights=residual) / counts)[inverse]
        df_spent += labels.size - 1
    return scores


def _best_grouping(groupings: list[np.ndarray], y: np.ndarray, df_spent: int) -> tuple[float, float, np.ndarray]:
    """(omega squared, p-value, groups) of the grouping with the smallest p-value, which is
    multiplied by the number of groupings tried."""
    tried = [(*_anova(g, y, df_spent), g) for g in groupings]
    omega, p, groups = min(tried, key=lambda t: (t[1], -t[0]))
    return omega, min(1.0, p * len(tried)), groups


def knob_importance(trials: Sequence[dict], knob_names: Sequence[str]) -> dict[str, float]:
    """Importance of each knob in ``knob_names`` for the reward, as shares summing to 1.

    Each trial is ``{"values": {knob: sysctl text}, "reward": float | None}``; a
    None reward marks a failed trial, which is left out. The result is ordered
    from most to least important and holds every knob in ``knob_names`` (0.0 for
    one that explains nothing). It is ``{}`` when there are fewer than
    ``MIN_TRIALS`` successful trials, when the reward never varied, or when no
    knob explains more of it than chance would: there is then nothing to rank.
    Shares are relative; :func:`knob_scores` gives the absolute fractions.
    """
    scores = knob_scores(trials, knob_names)
    total = sum(scores.values())
    if total <= 0:
        return {}
    return dict(sorted(((k, v / total) for k, v in scores.items()), key=lambda kv: -kv[1]))
