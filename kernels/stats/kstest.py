"""The two-sample Kolmogorov-Smirnov p-value from the statistic and the sample sizes.

Follows ``scipy.stats.ks_2samp(..., method="auto")``: the exact distribution when both
samples have at most 10,000 values, else Smirnov's asymptotic ``kstwo.sf(D, round(en))``.
SciPy is optional at run time; without it the p-value falls back to the Kolmogorov
limiting distribution (the same to about 1/sqrt(en) relative), which we document rather
than hide.
"""

from __future__ import annotations

import math

MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N


def ks_pvalue(d: float, n1: int, n2: int, method: str = "auto") -> float:
    """Two-sided p-value of KS statistic ``d`` for samples of ``n1`` and ``n2`` values."""
    if method not in ("auto", "exact", "asymp"):
        raise ValueError(f"ks_pvalue: method must be auto, exact or asymp, not {method!r}")
    if n1 < 1 or n2 < 1 or math.isnan(d):
        return math.nan
    try:
        from scipy.stats import _stats_py, distributions
    except ImportError:
        return _kolmogorov_sf(math.sqrt(n1 * n2 / (n1 + n2)) * d)
    if method == "exact" or (method == "auto" and max(n1, n2) <= MAX_EXACT_N):
        exact = getattr(_stats_py, "_attempt_exact_2kssamp", None)
        if exact is not None:
            ok, _, prob = exact(n1, n2, math.gcd(n1, n2), d, "two-sided")
            if ok:
                return float(min(max(prob, 0.0), 1.0))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(min(max(distributions.kstwo.sf(d, round(en)), 0.0), 1.0))


def _kolmogorov_sf(z: float) -> float:
    """P(K > z) for the Kolmogorov distribution: 2 sum (-1)^(k-1) exp(-2 k^2 z^2)."""
    if z <= 0:
        return 1.0
    if z < 0.3:  # the alternating series converges slowly here; the value is 1 to 1e-10
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * z * z)
        total += term if k % 2 else -term
        if term < 1e-17:
            break
    return min(max(2.0 * total, 0.0), 1.0)
