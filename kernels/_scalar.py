"""Scalar formulas shared by every backend of every kernel package: plain Python here (the
references call them as they are), compiled by the ``cpu.py`` modules with ``njit`` and by
the ``cuda.py`` modules as CUDA device functions, so the backends cannot drift apart."""

import math


def interpolate(s, m, q):
    """The q-quantile (q in [0, 1]) of the first m sorted values of s, NaN when m is 0.

    Linear interpolation between order statistics in NumPy's form (``np.quantile``'s
    default method, its ``_lerp``): from the lower neighbour below the midpoint, from the
    upper one above it, so results agree with NumPy to the last bit. A compiler that fuses
    the multiply and add (CUDA does) rounds once instead of twice: within an ulp or two.
    """
    if m == 0:
        return math.nan
    pos = q * (m - 1)
    lo = min(int(math.floor(pos)), m - 1)
    hi = min(lo + 1, m - 1)
    frac = pos - lo
    a = s[lo]
    b = s[hi]
    if frac == 0.0 or a == b:
        return a
    diff = b - a
    if frac < 0.5:
        return a + diff * frac
    return b - diff * (1.0 - frac)
