"""The numpy block integrator reproduces Open3D's TSDF kernel (and adds per-pixel weights)."""
from __future__ import annotations

import numpy as np
import open3d as o3d
import open3d.core as o3c

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import invert_pose
from depth_nodes.mapping.block_integrator import BlockIntegrator
from depth_nodes.mapping.blocks import voxel_points
from depth_nodes.mapping.synthetic import Box, Plane, Scene, look_at
from depth_nodes.mapping.voxel_store import VoxelStore

CAM = PinholeCamera.from_fov(160, 120, 90.0)
VS, RES, TRUNC = 0.1, 8, 0.3


def frame(rng):
    scene = Scene(planes=[Plane((0.0, 0.0, 0.02), (0.0, 0.0, 1.0))],
                  boxes=[Box((3.03, -0.47, 0.0), (3.83, 0.43, 1.21))])
    T = look_at((0.2, 0.1, 1.1), (3.4, 0.0, 0.5))
    depth = scene.render_depth(CAM, T).astype(np.float32)
    depth[~(depth <= 12.0)] = 0.0
    depth[rng.random(depth.shape) < 0.05] = 0.0  # holes
    color = rng.integers(0, 256, depth.shape + (3,)).astype(np.float32)
    return depth, color, T


def store_with_blocks(depth, T):
    store = VoxelStore(["tsdf", "weight", "color"], VS, RES, 4096, o3c.Device("CPU:0"))
    keys = store.vbg.compute_unique_block_coordinates(
        o3d.t.geometry.Image(o3c.Tensor(depth)), o3c.Tensor(CAM.K), o3c.Tensor(invert_pose(T)),
        1.0, 12.0, TRUNC / VS).numpy()
    keys = np.concatenate([keys, [[-1, -1, 0], [0, 0, 0]]])  # blocks around and behind the camera
    return store, np.unique(keys, axis=0).astype(np.int32)


def voxels(store, keys):
    buf, found = store.find(keys)
    assert found.all()
    v = store.block_views()
    return v["tsdf"][buf].copy(), v["weight"][buf].copy(), v["color"][buf].copy()


def test_matches_open3d_kernel_over_two_frames(rng):
    depth, color, T = frame(rng)
    ours, keys = store_with_blocks(depth, T)
    ref, _ = store_with_blocks(depth, T)
    integ = BlockIntegrator(RES, VS)
    T2 = T.copy()
    T2[:3, 3] += (0.13, -0.07, 0.05)
    for pose in (T, T2):
        ref.vbg.integrate(ref.tensor(keys), o3d.t.geometry.Image(o3c.Tensor(depth)),
                          o3d.t.geometry.Image(o3c.Tensor(color / 255.0)), o3c.Tensor(CAM.K),
                          o3c.Tensor(invert_pose(pose)), 1.0, 12.0, TRUNC / VS)
        integ.integrate(ours.block_views(), keys, ours.activate(keys), depth, CAM.K, invert_pose(pose), TRUNC,
                        color=color)
    (t0, w0, c0), (t1, w1, c1) = voxels(ref, keys), voxels(ours, keys)
    assert (w0 > 0).mean() > 0.2 and w0.max() == 2.0
    # the same voxels see the same pixels, up to float rounding at pixel borders
    assert np.mean(w0 == w1) > 0.9999
    same = w0 == w1
    assert np.mean(np.abs(t0 - t1)[same] < 1e-4) > 0.9999
    assert np.mean(np.abs(c0 - c1)[same].max(axis=-1) < 1e-2) > 0.9999


def test_per_pixel_weights(rng):
    depth, _, T = frame(rng)
    store, keys = store_with_blocks(depth, T)
    integ = BlockIntegrator(RES, VS)
    weight = np.zeros_like(depth)
    integ.integrate(store.block_views(), keys, store.activate(keys), depth, CAM.K, invert_pose(T), TRUNC,
                    weight=weight)
    t, w, _ = voxels(store, keys)
    assert not w.any() and not t.any()  # zero weight: no observation
    integ.integrate(store.block_views(), keys, store.activate(keys), depth, CAM.K, invert_pose(T), TRUNC,
                    weight=np.full_like(depth, 0.25))
    t1, w1, _ = voxels(store, keys)
    assert set(np.unique(w1)) == {0.0, 0.25}
    assert np.all(np.abs(t1) <= 1.0) and np.all(t1[w1 == 0] == 0.0)


def test_voxels_behind_the_camera_are_never_updated(rng):
    depth, _, T = frame(rng)
    store, keys = store_with_blocks(depth, T)
    T_back = T.copy()
    T_back[:3, :3] = T[:3, :3] @ np.diag([-1.0, 1.0, -1.0])  # same place, looking backwards
    BlockIntegrator(RES, VS).integrate(store.block_views(), keys, store.activate(keys), depth, CAM.K,
                                       invert_pose(T_back), TRUNC)
    _, w, _ = voxels(store, keys)
    z = (voxel_points(keys, RES, VS) - T_back[:3, 3]) @ T_back[:3, 2]  # optical z of every voxel sample
    behind = z.reshape(w.shape) <= 0
    assert behind.mean() > 0.9 and not w[behind].any()
