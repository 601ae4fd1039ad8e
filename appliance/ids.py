"""Random ids for the serving path (request ids, receipts): 128 bits from the OS's
CSPRNG, read 4 KiB at a time.

``os.urandom`` lets go of the GIL for its system call, and a request thread that lets
go of it under load waits for another thread's turn (up to the switch interval) to
get it back: one read per 256 ids instead of one per id."""

from __future__ import annotations

import os
import threading

POOL = 4096  # bytes read at a time

_lock = threading.Lock()
_pool = b""
_at = 0


def _reset() -> None:  # a forked child must not hand out its parent's ids
    global _pool, _at
    _pool, _at = b"", 0


os.register_at_fork(after_in_child=_reset)


def new_id() -> str:
    """32 hex digits, as ``secrets.token_hex(16)``."""
    global _pool, _at
    with _lock:
        if _at + 16 > len(_pool):
            _pool, _at = os.urandom(POOL), 0
        _at += 16
        return _pool[_at - 16 : _at].hex()
