"""`falaj rekey` and `falaj selftest`: key rotation and the on-box self-test."""

from __future__ import annotations
