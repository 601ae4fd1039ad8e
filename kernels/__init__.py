"""Falaj's numeric kernels.

Every kernel is one public function (or a scikit-learn style estimator) over arrays
with three implementations: a plain NumPy reference (the oracle the tests compare
against), a Numba CPU version and a CUDA version. Dispatch follows where the data
lives (NumPy -> CPU, CuPy -> GPU) and the ``FALAJ_DEVICE`` setting; see
``kernels._backend``.
"""
