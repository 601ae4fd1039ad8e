"""Shared fixtures. The CUDA simulator must be chosen before numba is first imported."""

import os
import shutil

# No real GPU here: numba.cuda kernels run on the CPU simulator. On a GPU box the
# real device is used instead.
if not (os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi")):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
