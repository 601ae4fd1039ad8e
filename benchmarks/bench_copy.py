"""Copy bandwidth: the ceiling a memory-bound kernel is measured against.

The host copy always runs; the device-to-device copy needs CuPy and a GPU.
"""

from __future__ import annotations

import numpy as np

from benchmarks._harness import Case
from kernels._backend import gpu_available


def cases(n_rows: int) -> list[Case]:
    n = n_rows * 20  # as many float64 values as the 20-column kernels read
    src = np.random.default_rng(0).random(n)
    dst = np.empty_like(src)
    out = [
        Case(
            "host_copy",
            lambda: np.copyto(dst, src),
            bytes_moved=2 * src.nbytes,
            copy_bandwidth=True,
            target="reference: host memory bandwidth",
        )
    ]
    if gpu_available():
        import cupy

        dsrc = cupy.asarray(src)
        ddst = cupy.empty_like(dsrc)

        def device_copy() -> None:
            cupy.copyto(ddst, dsrc)
            cupy.cuda.Device().synchronize()

        out.append(
            Case(
                "device_copy",
                device_copy,
                bytes_moved=2 * dsrc.nbytes,
                device="cuda",
                copy_bandwidth=True,
                target="reference: device memory bandwidth",
            )
        )
    return out
