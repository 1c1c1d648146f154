"""Numpy access to the voxels of an Open3D ``VoxelBlockGrid``.

The grid is a hash map from (3,) int32 block keys to buffer slots; every
attribute is a tensor of shape (capacity, res, res, res, channels) whose
voxels are stored z-major (x fastest). Voxel index ``v`` (world point
``v * voxel_size``) lives in block ``v >> log2(res)`` at local ``v & (res - 1)``.
On CPU the attribute tensors are read and written through zero-copy numpy
views; on CUDA through Open3D tensor indexing (copies).
"""
from __future__ import annotations

import math

import numpy as np
import open3d as o3d
import open3d.core as o3c


class VoxelStore:
    """A ``VoxelBlockGrid`` with float32 attributes ``names`` (``"color"`` has 3
    channels, every other attribute 1) and vectorised voxel indexing."""

    def __init__(self, names: list[str], voxel_size: float, res: int, capacity: int, device: o3c.Device):
        self.names = list(names)
        self.voxel_size = float(voxel_size)
        self.res = int(res)
        self.shift = int(math.log2(self.res))
        self.device = device
        self._cpu = device.get_type() == o3c.Device.DeviceType.CPU
        self.vbg = o3d.t.geometry.VoxelBlockGrid(
            self.names, [o3c.float32] * len(self.names),
            [o3c.SizeVector([3 if n == "color" else 1]) for n in self.names],
            voxel_size=self.voxel_size, block_resolution=self.res, block_count=int(capacity), device=device)

    # -- hash map -------------------------------------------------------------
    @property
    def size(self) -> int:
        return int(self.vbg.hashmap().size())

    @property
    def capacity(self) -> int:
        return int(self.vbg.hashmap().capacity())

    @property
    def numpy_views(self) -> bool:
        """Whether the attributes are accessed through zero-copy numpy views (CPU)."""
        return self._cpu

    def block_views(self) -> dict[str, np.ndarray]:
        """Zero-copy (capacity, res**3[, channels]) numpy views of every attribute
        (CPU only; invalid after the hash map grows)."""
        n = self.res ** 3
        views = {}
        for name in self.names:
            a = self.vbg.attribute(name).numpy()
            views[name] = a.reshape(len(a), n, 3) if name == "color" else a.reshape(len(a), n)
        return views

    def tensor(self, a: np.ndarray, dtype=np.int32) -> o3c.Tensor:
        """A numpy array as an Open3D tensor on this store's device."""
        return o3c.Tensor.from_numpy(np.ascontiguousarray(a, dtype=dtype)).to(self.device)

    def active(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys (M, 3) int32, buffer indices (M,) int64) of the allocated blocks."""
        hm = self.vbg.hashmap()
        buf = hm.active_buf_indices().cpu().numpy().astype(np.int64)
        keys = hm.key_tensor().cpu().numpy()[buf] if len(buf) else np.zeros((0, 3), np.int32)
        return keys.astype(np.int32), buf

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Buffer indices (int64) and found mask for (N, 3) block keys."""
        if len(keys) == 0:
            return np.zeros(0, np.int64), np.zeros(0, bool)
        buf, found = self.vbg.hashmap().find(self.tensor(keys))
        return buf.cpu().numpy().astype(np.int64), found.cpu().numpy()

    def activate(self, keys: np.ndarray) -> np.ndarray:
        """Allocate ``keys`` (existing ones are kept); returns their buffer indices."""
        if len(keys):
            self.vbg.hashmap().activate(self.tensor(keys))
        return self.find(keys)[0]

    def erase(self, keys: np.ndarray) -> int:
        """Free the blocks ``keys`` (zeroing their voxels first: Open3D reuses
        freed slots without clearing them). Returns the number freed."""
        if len(keys) == 0:
            return 0
        buf, found = self.find(keys)
        for name in self.names:
            attr = self.vbg.attribute(name)
            if self._cpu:
                attr.numpy()[buf[found]] = 0.0
            elif found.any():
                attr[self.tensor(buf[found], np.int64)] = 0.0
        self.vbg.hashmap().erase(self.tensor(keys[found]))
        return int(found.sum())

    # -- voxel indexing -------------------------------------------------------
    def block_lin(self, buf: np.ndarray) -> np.ndarray:
        """Flat voxel indices of every voxel of the blocks ``buf`` (storage order)."""
        n = self.res ** 3
        return (np.asarray(buf, dtype=np.int64)[:, None] * n + np.arange(n)[None, :]).ravel()

    def voxel_lin(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat index of the nearest voxel sample of finite (N, 3) world points and
        whether its block is allocated (the index is meaningless where not)."""
        return self.voxel_index_lin(np.rint(points * (1.0 / self.voxel_size)).astype(np.int64))

    def voxel_index_lin(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat index of (N, 3) int64 voxel indices and whether their block is allocated."""
        buf, found = self.find((v >> self.shift).astype(np.int32))
        local = v & (self.res - 1)
        lin = buf * self.res ** 3 + (local[:, 2] * self.res + local[:, 1]) * self.res + local[:, 0]
        return lin, found

    # -- attribute access -----------------------------------------------------
    def gather(self, name: str, lin: np.ndarray) -> np.ndarray:
        """Attribute values at flat voxel indices: (N,) or (N, channels)."""
        attr = self.vbg.attribute(name)
        ch = int(attr.shape[-1])
        if self._cpu:
            out = np.take(attr.numpy().reshape(-1, ch), lin, axis=0)  # faster than fancy indexing
        else:
            out = attr.reshape((-1, ch))[self.tensor(lin, np.int64)].cpu().numpy()
        return out[:, 0] if ch == 1 else out

    def gather_blocks(self, name: str, buf: np.ndarray) -> np.ndarray:
        """Whole blocks: (len(buf), res, res, res, channels), voxels z-y-x."""
        attr = self.vbg.attribute(name)
        if self._cpu:
            return np.take(attr.numpy(), buf, axis=0)
        return attr[self.tensor(buf, np.int64)].cpu().numpy()

    def scatter(self, name: str, lin: np.ndarray, rows: np.ndarray) -> None:
        """Write values (N,) or rows (N, channels) at flat voxel indices."""
        attr = self.vbg.attribute(name)
        ch = int(attr.shape[-1])
        rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(len(lin), ch)
        if self._cpu:
            attr.numpy().reshape(-1, ch)[lin] = rows
        else:
            attr.reshape((-1, ch))[self.tensor(lin, np.int64)] = self.tensor(rows, np.float32)
