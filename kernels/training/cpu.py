"""Numba CPU training kernels; same signatures and results as ``reference.py``.

The rows are split into one contiguous range per thread; each thread walks its range in
blocks of ``BLOCK`` rows, copies a block transposed into a small buffer that stays in L1
and adds the block's outer products with dot products over the block, which the compiler
vectorises. So a Newton step reads X once, whatever d is, and needs no (n, d) temporary.
Small X (fewer than ``SERIAL_BELOW`` elements) runs the same blocks on one thread.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

BLOCK = 64
# Below this many elements of X a fit step runs serially: a parallel launch costs more than
# the work (see kernels/stats/cpu.py). The serial kernel uses the same row blocks.
SERIAL_BELOW = 65_536  # elements: below this a parallel launch cost more than it saved


@nb.njit(inline="always", fastmath=True)
def _add_block(A, WA, nrows, G):
    # G[i, j] += sum_r A[i, r] * WA[j, r] for the lower triangle
    k = A.shape[0]
    for i in range(k):
        for j in range(i + 1):
            s = 0.0
            for r in range(nrows):
                s += A[i, r] * WA[j, r]
            G[i, j] += s


@nb.njit(cache=True, nogil=True, fastmath=True)
def _terms_block(X, y, beta, w_in, r_in, logistic, start, stop, G, g):
    # one thread's rows: adds to its G and g, returns its share of the loss
    d = X.shape[1]
    A = np.empty((d + 1, BLOCK))
    WA = np.empty((d + 1, BLOCK))
    loss = 0.0
    for b0 in range(start, stop, BLOCK):
        nrows = min(BLOCK, stop - b0)
        for r in range(nrows):
            row = b0 + r
            if logistic:
                z = beta[d]
                for j in range(d):
                    z += X[row, j] * beta[j]
                e = math.exp(-abs(z))
                p = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
                w = p * (1.0 - p)
                res = p - y[row]
                loss += max(z, 0.0) + math.log1p(e) - y[row] * z
            else:
                w = w_in[row]
                res = r_in[row]
            for j in range(d):
                A[j, r] = X[row, j]
                WA[j, r] = w * X[row, j]
                g[j] += res * X[row, j]
            A[d, r] = 1.0
            WA[d, r] = w
            g[d] += res
        _add_block(A, WA, nrows, G)
    return loss


@nb.njit(cache=True, nogil=True)
def _combine(Gs, gs, losses):
    G = Gs.sum(axis=0)
    k = G.shape[0]
    for i in range(k):
        for j in range(i + 1, k):
            G[i, j] = G[j, i]
    return G, gs.sum(axis=0), losses.sum()


@nb.njit(parallel=True, cache=True, nogil=True)
def _terms_par(X, y, beta, w_in, r_in, logistic, nt):
    n, d = X.shape
    Gs = np.zeros((nt, d + 1, d + 1))
    gs = np.zeros((nt, d + 1))
    losses = np.zeros(nt)
    step = (n + nt - 1) // nt
    for t in nb.prange(nt):
        start, stop = t * step, min(n, (t + 1) * step)
        losses[t] = _terms_block(X, y, beta, w_in, r_in, logistic, start, stop, Gs[t], gs[t])
    return _combine(Gs, gs, losses)


@nb.njit(cache=True, nogil=True)
def _terms_ser(X, y, beta, w_in, r_in, logistic, nt):
    # the same blocks as _terms_par, one after another: the same sums in the same order
    n, d = X.shape
    Gs = np.zeros((nt, d + 1, d + 1))
    gs = np.zeros((nt, d + 1))
    losses = np.zeros(nt)
    step = (n + nt - 1) // nt
    for t in range(nt):
        start, stop = t * step, min(n, (t + 1) * step)
        losses[t] = _terms_block(X, y, beta, w_in, r_in, logistic, start, stop, Gs[t], gs[t])
    return _combine(Gs, gs, losses)


def _terms(X, y, beta, w_in, r_in, logistic):
    kernel = _terms_ser if X.size < SERIAL_BELOW else _terms_par
    return kernel(X, y, beta, w_in, r_in, logistic, nb.get_num_threads())


_EMPTY = np.empty(0)


def weighted_gram(X: np.ndarray, w: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    G, g, _ = _terms(X, _EMPTY, np.zeros(X.shape[1] + 1), w, r, False)
    return G, g


def logistic_terms(
    X: np.ndarray, y: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    H, g, loss = _terms(X, y, beta, _EMPTY, _EMPTY, True)
    return H, g, float(loss)
