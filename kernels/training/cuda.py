"""numba.cuda training kernels; same signatures and results as ``reference.py``.

One kernel turns each row into its weight and residual (for logistic regression), then
the Gram kernel gives each thread one (i, j) entry of the lower triangle and one chunk of
rows, and adds its partial sum with an atomic: ``CHUNK`` rows per thread keeps the atomics
few. Inputs may be NumPy (copied to a real GPU when present, or run on the simulator) or
CuPy arrays; results come back to the host.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from kernels._backend import gpu_available, to_host

TPB = 32 if config.ENABLE_CUDASIM else 256
CHUNK = 16 if config.ENABLE_CUDASIM else 4096


def _xp(*arrays):
    if gpu_available():
        import cupy

        return cupy, [cupy.asarray(a) for a in arrays]
    return np, list(arrays)


@cuda.jit
def _logistic_rows(X, y, beta, w, r, loss):
    i = cuda.grid(1)
    if i >= X.shape[0]:
        return
    d = X.shape[1]
    z = beta[d]
    for j in range(d):
        z += X[i, j] * beta[j]
    e = math.exp(-abs(z))
    p = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
    w[i] = p * (1.0 - p)
    r[i] = p - y[i]
    cuda.atomic.add(loss, 0, max(z, 0.0) + math.log1p(e) - y[i] * z)


@cuda.jit
def _gram(X, w, r, pi, pj, G, g):
    # thread (p, c): entry (pi[p], pj[p]) of the lower triangle over row chunk c
    p, c = cuda.grid(2)
    n, d = X.shape
    if p >= pi.size:
        return
    start = c * CHUNK
    stop = min(n, start + CHUNK)
    s = 0.0
    i, j = pi[p], pj[p]
    for row in range(start, stop):
        xi = X[row, i] if i < d else 1.0
        xj = X[row, j] if j < d else 1.0
        s += w[row] * xi * xj
    cuda.atomic.add(G, (i, j), s)
    if j == 0:  # one thread per i also adds the gradient entry
        t = 0.0
        for row in range(start, stop):
            t += r[row] * (X[row, i] if i < d else 1.0)
        cuda.atomic.add(g, i, t)


def weighted_gram(X, w, r):
    xp, (X, w, r) = _xp(X, w, r)
    n, d = X.shape
    k = d + 1
    pi, pj = np.tril_indices(k)
    xpi, xpj = (xp.asarray(a.astype(np.int64)) for a in (pi, pj))
    G = xp.zeros((k, k))
    g = xp.zeros(k)
    if n:
        grid = (math.ceil(pi.size / TPB), math.ceil(n / CHUNK))
        _gram[grid, (TPB, 1)](X, w, r, xpi, xpj, G, g)
    G = to_host(G)
    G = np.tril(G) + np.tril(G, -1).T
    return G, to_host(g)


def logistic_terms(X, y, beta):
    xp, (X, y, beta) = _xp(X, y, beta)
    n = X.shape[0]
    w = xp.empty(n)
    r = xp.empty(n)
    loss = xp.zeros(1)
    if n:
        _logistic_rows[max(1, math.ceil(n / TPB)), TPB](X, y, beta, w, r, loss)
    H, g = weighted_gram(X, w, r)
    return H, g, float(to_host(loss)[0])
