"""RFC 6962 Merkle trees: the audit chain's and each decision batch's.

``leaf = SHA-256(0x00 || data)``, ``node = SHA-256(0x01 || left || right)``; the tree
over n leaves splits at the largest power of two below n (RFC 6962 §2.1). Equivalently,
built level by level, an odd last node is carried up unchanged, so every *perfect*
subtree (2^k leaves starting at a multiple of 2^k) has the same hash in every tree that
contains it. ``Tree`` keeps those hashes, level by level, in flat byte arrays, and
grows as leaves are appended: the root of a tree of any size up to the leaves held, an
inclusion proof or a consistency proof costs O(log² n) hashes, not a recompute.

Proofs verify with RFC 9162 §2.1.3.2 and §2.1.4.2's algorithms (``verify_inclusion``,
``verify_consistency``), which ``appliance.audit.verify_export`` repeats standalone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Tree:
    """Leaf hashes and every perfect subtree above them, appended to in order."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return len(self._levels[0]) // 32

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        level0 = self._levels[0]
        for h in leaf_hashes:
            if len(h) != 32:
                raise ValueError("a leaf hash is 32 bytes")
            level0 += h
        k = 0
        while len(self._levels[k]) >= 64:  # a level with a pair has a level above
            if len(self._levels) == k + 1:
                self._levels.append(bytearray())
            below, above = self._levels[k], self._levels[k + 1]
            prefix = b"\x01"
            for i in range(len(above) // 32 * 2, len(below) // 32 - 1, 2):
                above += _sha256(prefix + below[i * 32 : i * 32 + 64]).digest()
            k += 1

    def _perfect(self, level: int, index: int) -> bytes:
        lv = self._levels[level]
        return bytes(lv[index * 32 : index * 32 + 32])

    def leaf(self, index: int) -> bytes:
        return self._perfect(0, index)

    def subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range RFC 6962's recursion visits (``start`` a
        multiple of the range's split)."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self._perfect(n.bit_length() - 1, start // n)
        k = _split(n)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def _check(self, n: int | None) -> int:
        n = self.size if n is None else n
        if not 0 <= n <= self.size:
            raise ValueError(f"tree size {n} is beyond the {self.size} leaves held")
        return n

    def root(self, n: int | None = None) -> bytes:
        return self.subtree(0, self._check(n))

    def inclusion(self, index: int, n: int | None = None) -> list[bytes]:
        """PATH(index, D[0:n]) (RFC 6962 §2.1.1), leaf-side first."""
        n = self._check(n)
        if not 0 <= index < n:
            raise ValueError(f"leaf {index} is not in a tree of {n}")
        path: list[bytes] = []
        start, end = 0, n
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self.subtree(start + k, end))
                end = start + k
            else:
                path.append(self.subtree(start, start + k))
                start += k
        return path[::-1]

    def consistency(self, m: int, n: int | None = None) -> list[bytes]:
        """PROOF(m, D[0:n]) (RFC 6962 §2.1.2)."""
        n = self._check(n)
        if not 0 <= m <= n:
            raise ValueError(f"no consistency proof from size {m} to {n}")
        if m == 0 or m == n:
            return []
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self.subtree(start, end)]
        k = _split(n)
        if m <= k:
            return self._subproof(m, start, start + k, whole) + [self.subtree(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self.subtree(start, start + k)]


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    return Tree(leaf_hashes).root()


def naive_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH by the RFC's recursion, straight from its definition (tests, benchmarks)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(naive_root(leaf_hashes[:k]), naive_root(leaf_hashes[k:]))


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``path`` prove leaf hash ``leaf`` at ``index`` in the tree
    of ``size`` leaves with ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(m: int, n: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:  # fmt: skip
    """RFC 9162 §2.1.4.2: is the tree of size ``m`` with ``old_root`` a prefix of the tree
    of size ``n`` with ``new_root``?"""
    if not 0 <= m <= n:
        return False
    if m == n:
        return old_root == new_root and not proof
    if m == 0:
        return not proof  # the empty tree is a prefix of every tree
    proof = list(proof)
    if m & (m - 1) == 0:  # a power of two: the old root is the proof's implicit first node
        proof.insert(0, old_root)
    if not proof:
        return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
