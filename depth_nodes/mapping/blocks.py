"""Integer block-key helpers shared by the TSDF map and the ESDF window.

A block key is the (3,) int32 index ``floor(voxel_index / block_resolution)``;
keys are packed into one int64 (21 bits per axis) for fast set operations.
"""
from __future__ import annotations

import numpy as np

#: Block keys must lie in [-KEY_LIMIT, KEY_LIMIT) on every axis (21-bit packing).
KEY_LIMIT = 1 << 20


def pack(keys: np.ndarray) -> np.ndarray:
    """(N, 3) integer keys -> (N,) int64 (one-to-one inside the key limit)."""
    k = np.asarray(keys, dtype=np.int64) + KEY_LIMIT
    return (k[:, 0] << 42) | (k[:, 1] << 21) | k[:, 2]


def unpack(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack`: (N,) int64 -> (N, 3) int32."""
    p = np.asarray(packed, dtype=np.int64)
    mask = (1 << 21) - 1
    k = np.stack([(p >> 42) & mask, (p >> 21) & mask, p & mask], axis=1) - KEY_LIMIT
    return k.astype(np.int32)


def unique_keys(keys: np.ndarray) -> np.ndarray:
    """Deduplicated (M, 3) int32 keys."""
    if len(keys) == 0:
        return np.zeros((0, 3), np.int32)
    return unpack(np.unique(pack(keys)))


def voxel_points(keys: np.ndarray, res: int, voxel_size: float) -> np.ndarray:
    """World sample points (len(keys) * res**3, 3) of every voxel of the blocks, in
    Open3D's storage order (x fastest, then y, then z within a block)."""
    r = np.arange(res)
    z, y, x = np.meshgrid(r, r, r, indexing="ij")
    local = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    v = np.asarray(keys, dtype=np.int64)[:, None, :] * res + local[None, :, :]
    return v.reshape(-1, 3) * float(voxel_size)


def check_points(points) -> np.ndarray:
    """Validate an (N, 3) real array of query points; return float64 (non-finite kept)."""
    p = np.asarray(points)
    if p.dtype.kind not in "fiub" or p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must be an (N, 3) real array, got shape {p.shape} dtype {p.dtype}")
    return p.astype(np.float64, copy=False)


def rigid_transform(points: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``points @ R.T + t`` for (N, 3) arrays without BLAS (einsum), which is
    much faster than ``@`` for thin (N, 3) x (3, 3) products on a busy machine."""
    return np.einsum("ij,kj->ik", points, R) + t
