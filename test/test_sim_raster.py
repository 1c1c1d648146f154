"""Compiled camera rasterizer (depth_nodes.sim.raster) against Open3D ray casting and analytic geometry."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import open3d as o3d
import pytest

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import R_BODY_OPTICAL, make_pose, pose_from_xyz_yaw
from depth_nodes.sim.materials import Material
from depth_nodes.sim.meshbuild import MeshBuilder
from depth_nodes.sim.raster import MISS_ID, TriangleRasterizer
from depth_nodes.sim.render import CameraRenderer
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.world import World, WorldSpec, build_world

CAM = PinholeCamera.from_fov(160, 120, 90.0)
RIG = SensorRig()


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _body_pose(xyz, yaw, pitch=0.0):
    """Camera pose of a body at ``xyz`` with ``yaw`` and nose-down ``pitch`` (radians)."""
    T = pose_from_xyz_yaw(xyz, yaw)
    T[:3, :3] = T[:3, :3] @ _rot_y(pitch)
    return T @ RIG.T_body_camera


def _raycast(world: World, cam: PinholeCamera, T):
    """Open3D ray cast of every pixel ray (the reference): (t_hit, primitive ids)."""
    dirs = cam.rays(np.float32).reshape(-1, 3) @ T[:3, :3].T.astype(np.float32)
    hits = world.raycast(np.broadcast_to(T[:3, 3].astype(np.float32), dirs.shape), dirs)
    return hits.t_hit, hits.primitive


def _agreement(world: World, cam: PinholeCamera, T):
    """(miss-mask agreement, depth agreement to 1e-4 m, id agreement where depths agree, hit fraction)."""
    hits, _ = TriangleRasterizer(world.vertices, world.triangles, cam).render(T)
    z, prim = hits.t_hit, hits.primitive
    z_ref, prim_ref = _raycast(world, cam, T)
    hit, hit_ref = np.isfinite(z), np.isfinite(z_ref)
    both = hit & hit_ref
    close = both & (np.abs(np.where(both, z, 0.0) - np.where(both, z_ref, 0.0)) <= 1e-4)
    return ((hit == hit_ref).mean(), close.sum() / max(both.sum(), 1), (prim == prim_ref)[close].mean(), hit.mean())


@pytest.fixture(scope="module")
def worlds():
    return {
        "forest": build_world(WorldSpec("forest", 3, "dense", (30, 20))),
        "urban": build_world(WorldSpec("urban", 4, "dense", (40, 30))),
        "indoor": build_world(WorldSpec("indoor", 5, "dense")),
    }


@pytest.mark.parametrize("kind", ["forest", "urban", "indoor"])
def test_raster_matches_open3d_raycast(worlds, kind):
    world = worlds[kind]
    rng = np.random.default_rng(11)
    poses = [_body_pose(world.start, 0.0)]
    for _ in range(3):
        xyz = world.start + [rng.uniform(1, 8), rng.uniform(-2, 2), rng.uniform(-0.5, 0.8)]
        poses.append(_body_pose(xyz, rng.uniform(-0.8, 0.8), rng.uniform(-0.3, 0.4)))
    for T in poses:
        miss_ok, depth_ok, prim_ok, hit_frac = _agreement(world, CAM, T)
        assert hit_frac > 0.3, f"{kind}: pose sees almost nothing"
        assert miss_ok >= 0.995, f"{kind}: miss masks agree on {miss_ok:.4f}"
        assert depth_ok >= 0.995, f"{kind}: depths agree to 1e-4 m on {depth_ok:.4f}"
        assert prim_ok >= 0.995, f"{kind}: triangle ids agree on {prim_ok:.4f}"


@pytest.mark.parametrize("cam", [RIG.camera, PinholeCamera.from_fov(161, 121, 70.0),
                                 PinholeCamera.from_fov(7, 5, 120.0)],
                         ids=["320x240", "161x121", "7x5"])
def test_other_camera_sizes_match_raycast(worlds, cam):
    """Full size, sizes that leave partial tiles, and a tiny image."""
    miss_ok, depth_ok, prim_ok, _ = _agreement(worlds["forest"], cam, _body_pose(worlds["forest"].start, 0.1))
    assert min(miss_ok, depth_ok, prim_ok) >= 0.995


def _ground(size=200.0, material=Material.GROUND) -> World:
    """Two triangles: the plane z = 0 spanning +-size/2 (a mesh that crosses the camera plane)."""
    h = size / 2.0
    v = np.array([[-h, -h, 0.0], [h, -h, 0.0], [h, h, 0.0], [-h, h, 0.0]])
    return World(v, np.array([[0, 1, 2], [0, 2, 3]]), np.full(2, material, np.uint8), start=[0, 0, 1], goal=[1, 0, 1])


def test_near_plane_clipping_has_no_holes():
    """Camera 5 cm above a two-triangle ground looking down-forward: every downward ray hits, exactly."""
    world = _ground()
    T = make_pose(_rot_y(np.radians(35)) @ R_BODY_OPTICAL, [0.3, -0.2, 0.05])
    hits, _ = TriangleRasterizer(world.vertices, world.triangles, CAM).render(T)
    z, prim = hits.t_hit, hits.primitive
    d = CAM.rays(np.float32).astype(np.float64).reshape(-1, 3) @ T[:3, :3].T     # the rays rasterized
    down = d[:, 2] < 0
    t = np.where(down, -0.05 / np.where(down, d[:, 2], -1.0), np.nan)
    inside = down & (np.abs(d[:, 0] * t + 0.3) < 99) & (np.abs(d[:, 1] * t - 0.2) < 99)
    assert inside.sum() > 0.5 * z.size
    assert np.all(np.isfinite(z[inside])), f"{(~np.isfinite(z[inside])).sum()} holes"
    np.testing.assert_allclose(z[inside], t[inside], rtol=1e-6, atol=1e-6)
    assert np.all(~np.isfinite(z[~down])) and np.all(prim[~down] == MISS_ID)   # no wrap-around above horizon


def test_triangle_behind_and_in_front_matches_raycast():
    """A wall whose triangles have vertices behind the camera (no clipping artefacts, no wrap-around)."""
    mb = MeshBuilder()
    mb.box((0.0, 0.0, 0.5), (6.0, 8.0, 5.0), Material.CONCRETE)       # camera inside a closed box
    world = World(*mb.build(), start=[0, 0, 0], goal=[1, 0, 0])
    for yaw in (0.0, 0.7, 2.5):
        T = _body_pose([0.5, 0.3, 0.2], yaw, 0.2)
        z = TriangleRasterizer(world.vertices, world.triangles, CAM).render(T)[0].t_hit
        z_ref, _ = _raycast(world, CAM, T)
        assert np.all(np.isfinite(z)), "camera inside a closed box must see a wall at every pixel"
        assert np.mean(np.abs(z - z_ref) <= 1e-4) >= 0.995


def test_thin_wires_sampled_at_pixel_centres_like_raycast():
    """Wires 6 mm thick 3 m away (a third of a pixel) are hit at the same pixels as ray casting."""
    mb = MeshBuilder()
    mb.frustum((3.0, -3.0, -0.5), (3.0, 3.0, 2.5), 0.003, 0.003, Material.METAL, segments=6)
    mb.frustum((3.5, 2.0, 0.0), (3.5, -2.0, 1.3), 0.003, 0.003, Material.METAL, segments=6)
    world = World(*mb.build(), start=[0, 0, 0], goal=[1, 0, 0])
    T = _body_pose([0.0, 0.0, 1.0], 0.05, -0.01)
    z = TriangleRasterizer(world.vertices, world.triangles, CAM).render(T)[0].t_hit
    z_ref, _ = _raycast(world, CAM, T)
    assert 10 <= np.isfinite(z_ref).sum() < 200
    assert np.array_equal(np.isfinite(z), np.isfinite(z_ref))
    hit = np.isfinite(z)
    np.testing.assert_allclose(z[hit], z_ref[hit], atol=1e-4)


def test_bands_and_threads_do_not_change_results(worlds):
    world = worlds["forest"]
    r = TriangleRasterizer(world.vertices, world.triangles, CAM, world.materials)
    poses = [_body_pose(world.start + [x, 0.0, 0.0], 0.3 * x) for x in (0.0, 2.0)]
    ref = r.render_many(poses)
    with ThreadPoolExecutor(3) as pool:
        for bands in (2, 3, 7):
            for (hits, dirs), (hits0, dirs0) in zip(r.render_many(poses, pool, bands), ref):
                for field in ("t_hit", "primitive", "material", "normals"):
                    assert np.array_equal(getattr(hits, field), getattr(hits0, field)), field
                assert np.array_equal(dirs, dirs0)


def test_renderer_hits_match_raycast_materials_and_normals(worlds):
    world = worlds["urban"]
    ren = CameraRenderer(world, CAM)
    T = _body_pose(world.start + [2.0, 0.0, 0.0], 0.4)
    hits, origin, dirs = ren.cast(T)
    np.testing.assert_allclose(origin, T[:3, 3], atol=1e-6)
    np.testing.assert_allclose(dirs, CAM.rays(np.float64).reshape(-1, 3) @ T[:3, :3].T, rtol=1e-6, atol=1e-6)
    ref = world.cast_packed(np.hstack([np.broadcast_to(origin, dirs.shape), dirs]))
    same = hits.primitive == ref.primitive
    assert same.mean() >= 0.995
    assert np.array_equal(hits.material[same], ref.material[same])
    np.testing.assert_allclose(hits.normals[same], ref.normals[same], atol=1e-5)
    facing = np.einsum("ij,ij->i", hits.normals, dirs)
    assert np.all(facing[hits.hit] <= 1e-6), "normals face against the rays"
    assert np.all(hits.material[~hits.hit] == Material.MISS)
    np.testing.assert_array_equal(np.isnan(ren.depth(T)).ravel(), ~hits.hit)


def test_bad_input_is_rejected():
    world = _ground()
    with pytest.raises(ValueError, match="camera"):
        TriangleRasterizer(world.vertices, world.triangles, "cam")
    with pytest.raises(ValueError, match="triangles"):
        TriangleRasterizer(world.vertices, [[0, 1, 9]], CAM)
    with pytest.raises(ValueError, match="vertices"):
        TriangleRasterizer([[0, 0, np.nan]] * 3, [[0, 1, 2]], CAM)
    r = TriangleRasterizer(world.vertices, world.triangles, CAM)
    with pytest.raises(ValueError, match="T_world_cam"):
        r.render(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="bands"):
        r.render(np.eye(4), bands=0)
    with pytest.raises(ValueError, match="materials"):
        TriangleRasterizer(world.vertices, world.triangles, CAM, materials=[1, 2, 3])


def test_open3d_mesh_world_renders_same_as_raycast():
    """A sphere from Open3D (curved, closed): raster depth equals ray-cast depth."""
    sphere = o3d.geometry.TriangleMesh.create_sphere(1.0, resolution=40).translate((4.0, 0.2, 1.0))
    world = World.from_mesh(sphere, Material.PLASTER)
    miss_ok, depth_ok, prim_ok, hit_frac = _agreement(world, CAM, _body_pose([0, 0, 1.0], 0.0))
    assert hit_frac > 0.05
    assert miss_ok >= 0.998 and depth_ok >= 0.998 and prim_ok >= 0.995
