"""Conservative minimum / maximum of an image over pixel rectangles.

The image is cut into square tiles, and for every k the extrema over every
window of 2**k x 2**k tiles are tabulated (a sparse table with square
windows): building it costs a few whole-table ``min``/``max`` passes; each
rectangle query is four lookups. The windows cover every tile the rectangle
touches and may reach up to one window size beyond it, so the answer is a
*bound*: the returned minimum is <= and the maximum >= the exact extremum over
the rectangle. Used by
the block integrator to find blocks that a depth frame cannot update, or that
it updates uniformly.
"""
from __future__ import annotations

import numpy as np


def _tile_for(shape: tuple[int, int]) -> int:
    """Power-of-two tile edge giving at most about 100 tiles along the longer side."""
    return max(2, 1 << (max(shape) // 96).bit_length())


def _tile_reduce(a: np.ndarray, t: int, op) -> np.ndarray:
    """``op`` over each t x t tile of ``a`` (shape a multiple of t), by pairwise halving
    (elementwise passes: much faster than a reduction over small strided axes)."""
    while t > 1:
        t //= 2
        a = op(a[:, 0::2], a[:, 1::2])
        a = op(a[0::2], a[1::2])
    return a


def _square_table(a: np.ndarray, op) -> np.ndarray:
    """(L, ny, nx): entry [k, y, x] = ``op`` over the tiles [y, y + 2**k) x [x, x + 2**k) that
    exist (squares reaching past the grid edge cover only its part inside)."""
    ny, nx = a.shape
    out = np.empty((max(ny, nx).bit_length(), ny, nx), a.dtype)
    out[0] = a
    for k in range(1, len(out)):
        s = 1 << (k - 1)
        prev, cur = out[k - 1], out[k]
        cur[...] = prev
        if s < nx:
            op(cur[:, :nx - s], prev[:, s:], out=cur[:, :nx - s])
        if s < ny:
            op(cur[:ny - s], cur[s:].copy(), out=cur[:ny - s])
    return out


class RangeExtrema:
    """Bounds on the min and max of a float (H, W) image over inclusive pixel rectangles."""

    def __init__(self, image: np.ndarray, tile: int | None = None):
        img = np.asarray(image, dtype=np.float32)
        if img.ndim != 2 or img.size == 0:
            raise ValueError(f"image must be a non-empty 2-D array, got shape {img.shape}")
        self.shape = img.shape
        self.tile = _tile_for(img.shape) if tile is None else int(tile)
        h, w = img.shape
        t = self.tile
        ny, nx = -(-h // t), -(-w // t)
        # pixels past the image edge are neutral: +inf for the minimum, -inf for the maximum
        lo = np.full((ny * t, nx * t), np.inf, np.float32)
        lo[:h, :w] = img
        hi = np.full_like(lo, -np.inf)
        hi[:h, :w] = img
        self._min = _square_table(_tile_reduce(lo, t, np.minimum), np.minimum)
        self._max = _square_table(_tile_reduce(hi, t, np.maximum), np.maximum)
        self._log2 = np.array([0] + [n.bit_length() - 1 for n in range(1, max(ny, nx) + 1)], np.int64)

    def query(self, r0: np.ndarray, r1: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lower bound of the min, upper bound of the max) over rows ``r0..r1`` and columns ``c0..c1``
        (inclusive int arrays of one length, ``0 <= r0 <= r1 < H``, ``0 <= c0 <= c1 < W``)."""
        t = self.tile
        y0, y1, x0, x1 = (np.asarray(a, np.int64) // t for a in (r0, r1, c0, c1))
        k = self._log2[np.maximum(y1 - y0, x1 - x0) + 1]
        # per axis, the windows of side 2**k starting at the rectangle's first tile and ending at
        # its last one (or starting there too when the side exceeds it) cover it
        ya, xa = np.maximum(y1 - (1 << k) + 1, y0), np.maximum(x1 - (1 << k) + 1, x0)
        out = []
        for table, op in ((self._min, np.minimum), (self._max, np.maximum)):
            out.append(op(op(table[k, y0, x0], table[k, y0, xa]), op(table[k, ya, x0], table[k, ya, xa])))
        return out[0], out[1]
