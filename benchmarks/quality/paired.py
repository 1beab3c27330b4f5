"""Paired statistics over users: bootstrap resamples of two per-user score arrays, and Wilcoxon's signed-rank p.

The runners report different statistics of the same resamples (``ablation_report``: the ratio of means over
2,000 resamples; ``hybrid_office``: the mean difference over 10,000), so the statistic is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def paired_bootstrap(a: np.ndarray, b: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     resamples: int, seed: int = 0, chunk: int = 1000) -> np.ndarray:
    """``statistic(a[idx], b[idx])`` (one value per row) for ``resamples`` resamples of the users, one row of
    ``idx`` each. Rows are drawn ``chunk`` at a time from one seeded generator: the same draws as one call, in
    bounded memory."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, len(a), size=(min(chunk, resamples - start), len(a)))
        out.append(statistic(a[idx], b[idx]))
    return np.concatenate(out)


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of the paired differences ``diff`` (scipy's defaults: zero differences
    dropped); 1.0 when none is non-zero."""
    from scipy.stats import wilcoxon

    return float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
