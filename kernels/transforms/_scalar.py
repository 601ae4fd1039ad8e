"""Scalar formulas shared by every backend: plain Python here (the reference calls them
as they are), compiled by ``cpu.py`` with ``njit`` and by ``cuda.py`` as CUDA device
functions, so the three backends cannot drift apart."""

import math


def interpolate(s, m, q):
    """The q-quantile of the first m (sorted) values of s, by linear interpolation."""
    if m == 0:
        return math.nan
    pos = q * (m - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, m - 1)
    frac = pos - lo
    a = s[lo]
    b = s[hi]
    if frac == 0.0 or a == b:
        return a
    return a + (b - a) * frac
