"""Feature transforms: fit on training data, apply identically in serving.

Each transform runs on three backends with the same signatures: ``reference`` (NumPy,
the oracle), ``cpu`` (Numba) and ``cuda`` (numba.cuda). Estimators pick one from where
the data lives and the device unless given ``backend=``; NumPy inputs below
``kernels._backend.SMALL_WORK`` elements take the NumPy path instead of Numba's thread
pool (except rolling windows, whose reference loops in Python). Fitted state is JSON-able (``to_dict`` /
``from_dict``); moment- and count-based fits merge across partitions via
``kernels.summary``.
"""

from kernels.transforms.binning import QuantileBucketizer
from kernels.transforms.dates import PARTS as DATETIME_PARTS
from kernels.transforms.dates import datetime_parts
from kernels.transforms.encoding import (
    FrequencyEncoder,
    HashingEncoder,
    OneHotEncoder,
    TargetEncoder,
    hash_buckets,
)
from kernels.transforms.impute import SimpleImputer
from kernels.transforms.rolling import AGGREGATES as ROLLING_AGGREGATES
from kernels.transforms.rolling import rolling_aggregates
from kernels.transforms.scaling import (
    MinMaxScaler,
    QuantileClipper,
    RobustScaler,
    StandardScaler,
    log1p,
)

__all__ = [
    "DATETIME_PARTS",
    "ROLLING_AGGREGATES",
    "FrequencyEncoder",
    "HashingEncoder",
    "MinMaxScaler",
    "OneHotEncoder",
    "QuantileBucketizer",
    "QuantileClipper",
    "RobustScaler",
    "SimpleImputer",
    "StandardScaler",
    "TargetEncoder",
    "datetime_parts",
    "hash_buckets",
    "log1p",
    "rolling_aggregates",
]
