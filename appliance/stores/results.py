"""A DuckDB answer as one Arrow table, whichever shape this DuckDB gives."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def arrow_table(result: Any) -> pa.Table:
    """``result.arrow()`` read whole: DuckDB 1.4 answers a Table, later ones a reader."""
    table = result.arrow()
    return table.read_all() if isinstance(table, pa.RecordBatchReader) else table
