"""Simulated sensors: depth accuracy, projection conventions, stereo, radar, odometry."""
from __future__ import annotations

import cv2
import numpy as np
import open3d as o3d
import pytest

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import R_BODY_OPTICAL, invert_pose, make_pose, pose_from_xyz_yaw, transform_points
from depth_nodes.sim.appearance import Appearance
from depth_nodes.sim.materials import Material
from depth_nodes.sim.meshbuild import MeshBuilder
from depth_nodes.sim.odometry import OdometryNoise, OdometrySimulator
from depth_nodes.sim.radar import CLUTTER, GHOST, REAL, RadarConfig, RadarSimulator, transform_radar_points
from depth_nodes.sim.render import CameraRenderer, render_depth, stereo_right_pose
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.suite import SensorSuite
from depth_nodes.sim.world import World, WorldSpec, build_world

CAM = PinholeCamera.from_fov(160, 120, 90.0)


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _world_dirs(cam, T):
    return cam.rays(np.float64).reshape(-1, 3) @ T[:3, :3].T


@pytest.fixture(scope="module")
def forest():
    return build_world(WorldSpec("forest", 5, "medium", (30, 20)))


def test_depth_matches_analytic_plane():
    ground = o3d.geometry.TriangleMesh.create_box(200, 200, 1).translate((-100, -100, -1))
    w = World.from_mesh(ground, Material.GROUND)
    # camera 2 m up, pitched 30 deg down (body pitch = positive rotation about body y)
    T = make_pose(_rot_y(np.radians(30)) @ R_BODY_OPTICAL, [0.3, -0.2, 2.0])
    depth = render_depth(w, CAM, T)
    d = _world_dirs(CAM, T)
    with np.errstate(divide="ignore"):
        t = np.where(d[:, 2] < 0, -2.0 / d[:, 2], np.nan).reshape(depth.shape)
    valid = np.isfinite(t) & (t < 60)
    assert valid.mean() > 0.8
    assert np.array_equal(np.isnan(depth) & valid, np.zeros_like(valid))
    np.testing.assert_allclose(depth[valid], t[valid], atol=1e-4, rtol=0)


def test_depth_matches_analytic_cylinder():
    mb = MeshBuilder()
    c, r = np.array([4.0, 0.5]), 0.6
    mb.frustum((c[0], c[1], -5.0), (c[0], c[1], 5.0), r, r, Material.BARK, segments=1024)
    w = World(*mb.build(), start=[0, 0, 0], goal=[1, 0, 0])
    T = make_pose(R_BODY_OPTICAL, [0.0, 0.0, 0.0])
    depth = render_depth(w, CAM, T)
    d = _world_dirs(CAM, T)       # optical z = 1, so the ray parameter is the depth
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = -2 * (d[:, 0] * c[0] + d[:, 1] * c[1])
    cc = c @ c - r * r
    disc = b * b - 4 * a * cc
    with np.errstate(invalid="ignore"):
        t = ((-b - np.sqrt(disc)) / (2 * a)).reshape(depth.shape)
        # surface normal vs ray: skip grazing pixels where the polygon differs most from the circle
        hit = d * t.reshape(-1, 1)
        n = (hit[:, :2] - c) / r
        cos_inc = np.abs((n * d[:, :2]).sum(1)) / np.linalg.norm(d, axis=1)
    good = (disc.reshape(depth.shape) > 0) & (cos_inc.reshape(depth.shape) > 0.3)
    assert good.sum() > 500
    np.testing.assert_allclose(depth[good], t[good], atol=1e-4, rtol=0)
    assert np.all(np.isnan(depth[disc.reshape(depth.shape) < -1e-3]))


def test_known_points_project_to_expected_pixels_rep103():
    # small boxes at known world points around a yawed body; camera on the rig
    rig = SensorRig.with_size(160, 120)
    T_wb = pose_from_xyz_yaw([1.0, 2.0, 1.5], np.radians(40))
    T_wc = T_wb @ rig.T_body_camera
    body_pts = np.array([[6.0, 0.0, 0.0], [6.0, 2.0, 0.0], [6.0, 0.0, 1.5], [5.0, -1.5, -1.0]])
    world_pts = transform_points(T_wb, body_pts)
    mb = MeshBuilder()
    for p in world_pts:
        mb.box(p, (0.2, 0.2, 0.2), Material.CONCRETE)
    w = World(*mb.build(), start=[0, 0, 0], goal=[1, 0, 0])
    depth = render_depth(w, rig.camera, T_wc)
    cam_pts = transform_points(invert_pose(T_wc), world_pts)
    uv, z = rig.camera.project(cam_pts)
    assert np.all(rig.camera.in_image(uv, z))
    for (u, v), zz in zip(np.round(uv).astype(int), z):
        assert abs(depth[v, u] - (zz - 0.1)) < 0.12   # front face of the 0.2 m box
    cx, cy = rig.camera.cx, rig.camera.cy
    assert abs(uv[0, 0] - cx) < 1 and abs(uv[0, 1] - cy) < 1    # straight ahead -> centre
    assert uv[1, 0] < cx - 10                                     # body +y (left) -> image left
    assert uv[2, 1] < cy - 10                                     # body +z (up) -> image top
    assert uv[3, 0] > cx + 10 and uv[3, 1] > cy + 10              # right and below


def test_stereo_warp_by_gt_disparity_matches_left(forest):
    rig = SensorRig.with_size(320, 240)
    r = CameraRenderer(forest, rig.camera, Appearance.randomized(5, noise_sigma=0.0))
    T_wc = pose_from_xyz_yaw(forest.start, 0.1) @ rig.T_body_camera
    fr = r.stereo(T_wc, rig.baseline_m, rng=None)
    assert fr.left.shape == fr.right.shape == (240, 320, 3) and fr.left.dtype == np.uint8
    disp = rig.camera.fx * rig.baseline_m / fr.depth
    h, w = fr.depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mapx = (u - np.nan_to_num(disp, nan=0.0)).astype(np.float32)
    warped = cv2.remap(fr.right, mapx, v, cv2.INTER_LINEAR)
    valid = np.isfinite(disp) & (mapx > 1) & (disp > 0.5)
    # ignore occlusion borders: pixels whose depth changes a lot nearby
    dfill = np.nan_to_num(fr.depth, nan=1e3)
    dz = cv2.dilate(dfill, np.ones((5, 5))) - cv2.erode(dfill, np.ones((5, 5)))
    valid &= dz < 0.2 * dfill
    L = fr.left.astype(np.float32)
    err_warp = np.abs(L - warped.astype(np.float32))[valid].mean()
    err_none = np.abs(L - fr.right.astype(np.float32))[valid].mean()
    assert valid.mean() > 0.5
    assert err_none > 3.0 * err_warp, (err_none, err_warp)
    # texture is rich: few flat 9x9 patches outside the sky
    gray = cv2.cvtColor(fr.left, cv2.COLOR_RGB2GRAY).astype(np.float32)
    local_std = np.sqrt(np.maximum(cv2.blur(gray ** 2, (9, 9)) - cv2.blur(gray, (9, 9)) ** 2, 0))
    assert np.mean(local_std[np.isfinite(fr.depth)] < 2.0) < 0.1


def test_right_pose_and_camera_follow_ros_convention():
    rig = SensorRig()
    T = pose_from_xyz_yaw([1, 2, 3], 0.5) @ rig.T_body_camera
    Tr = stereo_right_pose(T, 0.1)
    np.testing.assert_allclose(invert_pose(T) @ Tr[:, 3], [0.1, 0, 0, 1], atol=1e-12)
    assert rig.right_camera.P[0, 3] == pytest.approx(-rig.camera.fx * 0.1)
    # right camera is to the right of the left one: body -y
    np.testing.assert_allclose(rig.T_body_right[:3, 3] - rig.T_body_camera[:3, 3], [0, -0.1, 0], atol=1e-12)


def test_same_seed_same_image_and_noise(forest):
    r = CameraRenderer(forest, CAM)
    T = pose_from_xyz_yaw(forest.start, 0.0) @ make_pose(R_BODY_OPTICAL)
    a = r.rgb(T, np.random.default_rng(1))
    b = r.rgb(T, np.random.default_rng(1))
    c = r.rgb(T, np.random.default_rng(2))
    assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()


def _wall_world():
    wall = o3d.geometry.TriangleMesh.create_box(1, 60, 20).translate((10, -30, -10))
    return World.from_mesh(wall)


def test_radar_points_on_surfaces_and_counts(forest):
    cfg = RadarConfig(az_noise_deg=0.0, el_noise_deg=0.0, clutter_fraction=0.0, ghost_fraction=0.0)
    sim = RadarSimulator(cfg)
    rng = np.random.default_rng(0)
    T = pose_from_xyz_yaw(forest.start, 0.0)
    scan = sim.scan(forest, T, [1.0, 0.0, 0.0], rng)
    assert scan.points.dtype == np.float32 and scan.points.shape[1] == 5
    assert 50 <= len(scan.points) <= 300
    assert np.all(scan.labels == REAL)
    rngs = np.linalg.norm(scan.points[:, :3], axis=1)
    assert rngs.min() >= cfg.range_min_m - 0.1 and rngs.max() <= cfg.range_max_m + 0.1
    d = forest.distance(transform_points(T, scan.points[:, :3].astype(np.float64)))
    assert np.percentile(d, 95) < 0.1 and d.max() < 0.25
    # field of view
    az = np.degrees(np.arctan2(scan.points[:, 1], scan.points[:, 0]))
    assert np.all(np.abs(az) <= cfg.hfov_deg / 2 + 1.0)


def test_radar_doppler_sign_and_magnitude():
    w = _wall_world()
    sim = RadarSimulator(RadarConfig(clutter_fraction=0.0, ghost_fraction=0.0, velocity_noise_mps=0.05))
    T = make_pose(None, [0.0, 0.0, 1.5])
    for v in ([2.0, 0.0, 0.0], [-1.5, 0.5, 0.0]):
        scan = sim.scan(w, T, v, np.random.default_rng(3))
        u = scan.points[:, :3] / np.linalg.norm(scan.points[:, :3], axis=1, keepdims=True)
        expected = -(u @ np.asarray(v))
        assert np.sign(np.median(scan.points[:, 3])) == -np.sign(v[0])   # approaching -> negative
        assert np.abs(scan.points[:, 3] - expected).max() < 0.35          # noise + angle noise
        assert np.abs(np.mean(scan.points[:, 3] - expected)) < 0.05


def test_radar_clutter_and_ghost_fractions():
    w = _wall_world()
    sim = RadarSimulator(RadarConfig(clutter_fraction=0.2, ghost_fraction=0.1))
    T = make_pose(None, [0.0, 0.0, 1.5])
    labels = np.concatenate([sim.scan(w, T, [0, 0, 0], np.random.default_rng(i)).labels for i in range(5)])
    assert abs(np.mean(labels == CLUTTER) - 0.2) < 0.03
    assert abs(np.mean(labels == GHOST) - 0.1) < 0.03
    scan = sim.scan(w, T, [0, 0, 0], np.random.default_rng(9))
    ghost_r = np.linalg.norm(scan.points[scan.labels == GHOST, :3], axis=1)
    assert np.all(ghost_r > 15.0)                   # wall is >= 10 m away, ghosts at twice the range
    with pytest.raises(ValueError, match="clutter_fraction"):
        RadarConfig(clutter_fraction=1.5)


def test_radar_points_transform_to_camera_frame():
    rig = SensorRig()
    pts = np.array([[5.0, 1.0, 0.5, -1.0, 30.0]], np.float32)
    out = transform_radar_points(pts, rig.T_camera_radar)
    # body forward -> optical z, body left -> optical -x, body up -> optical -y
    assert out[0, 2] > 4.9 and out[0, 0] < -0.9 and out[0, 1] < -0.4
    assert out[0, 3] == -1.0 and out[0, 4] == 30.0


def test_odometry_truth_and_drift():
    T = [pose_from_xyz_yaw([0.1 * i, 0.0, 1.5], 0.0) for i in range(200)]
    truth = OdometrySimulator()
    est, v = truth(T[5], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(est, T[5])
    np.testing.assert_allclose(v, [1.0, 0.0, 0.0])
    drift = OdometrySimulator(OdometryNoise(drift_pos_m_per_sqrt_m=0.05, drift_yaw_rad_per_sqrt_m=0.01),
                              np.random.default_rng(0))
    errs = [np.linalg.norm(drift(Ti, [1, 0, 0])[0][:3, 3] - Ti[:3, 3]) for Ti in T]
    assert errs[0] == 0.0 and max(errs) > 0.05
    with pytest.raises(ValueError, match="drift"):
        OdometryNoise(drift_pos_m_per_sqrt_m=-1)


def test_shadows_darken_ground_under_a_roof():
    mb = MeshBuilder()
    mb.box((0.0, 0.0, -0.5), (40.0, 40.0, 1.0), Material.CONCRETE)     # ground, top at z = 0
    mb.box((4.0, 0.0, 3.0), (3.0, 3.0, 0.2), Material.CONCRETE)        # roof slab 3 m up
    w = World(*mb.build(), start=[0, 0, 1.5], goal=[1, 0, 1.5])
    app = Appearance(sun_dir=[0.0, 0.0, 1.0], noise_sigma=0.0)
    T = make_pose(_rot_y(np.radians(60)) @ R_BODY_OPTICAL, [0.0, 0.0, 2.0])  # looking down-forward
    lit = CameraRenderer(w, CAM, app).rgbd(T)
    shaded = CameraRenderer(w, CAM, app.with_(shadows=True)).rgbd(T)
    # pixel seeing the ground straight below the slab centre (4, 0, 0)
    uv, _ = CAM.project(transform_points(invert_pose(T), np.array([[4.0, 0.0, 0.0]])))
    u, v = np.round(uv[0]).astype(int)
    assert np.isclose(lit[1][v, u], shaded[1][v, u])
    assert shaded[0][v, u].mean() < 0.75 * lit[0][v, u].mean()


def test_motion_blur_averages_over_exposure(forest):
    r = CameraRenderer(forest, CAM)
    T0 = pose_from_xyz_yaw(forest.start, 0.0) @ make_pose(R_BODY_OPTICAL)
    T1 = pose_from_xyz_yaw(forest.start, 0.15) @ make_pose(R_BODY_OPTICAL)
    sharp = r.rgb(T0)
    same = r.rgb_motion_blur(T0, T0, samples=3).astype(int)
    assert np.abs(same - sharp).max() <= 1        # float rounding only
    blurred = r.rgb_motion_blur(T0, T1, samples=5).astype(np.float32)
    grad = lambda im: np.abs(np.diff(im.astype(np.float32), axis=1)).mean()  # noqa: E731
    assert grad(blurred) < 0.9 * grad(sharp)
    with pytest.raises(ValueError, match="samples"):
        r.rgb_motion_blur(T0, T1, samples=0)


@pytest.mark.parametrize("kind", ["forest", "indoor"])
def test_opencv_sgbm_matches_gt_disparity_on_rendered_pairs(kind):
    """Texture is rich enough for classical stereo: SGBM is dense and agrees with GT."""
    w = build_world(WorldSpec(kind, 3, "medium"))
    rig = SensorRig()
    fr = SensorSuite(w, rig).render(pose_from_xyz_yaw(w.start, 0.2), [1.0, 0, 0], np.random.default_rng(0),
                                    radar=False)
    gray = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in (fr.rgb, fr.right)]
    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=32, blockSize=5, P1=200, P2=800,
                                 uniquenessRatio=5, speckleWindowSize=50, speckleRange=2)
    disp = sgbm.compute(*gray).astype(np.float32) / 16.0
    gt = rig.camera.fx * rig.baseline_m / fr.depth
    valid = np.isfinite(gt) & (gt > 0.5) & (gt < 31)
    found = valid & (disp > 0)
    assert found.sum() > 0.7 * valid.sum()
    assert np.mean(np.abs(disp - gt)[found] > 2.0) < 0.05


def test_domain_randomisation_differs_per_world_seed():
    a, b = Appearance.randomized(1), Appearance.randomized(2)
    assert not np.allclose(a.sun_dir, b.sun_dir)
    assert not np.allclose(a.palette, b.palette)
    assert np.allclose(Appearance.randomized(1).palette, a.palette)
    indoor = Appearance.for_world(WorldSpec("indoor", 1))
    assert indoor.ambient > a.ambient and indoor.sun < a.sun
    with pytest.raises(ValueError, match="sun_dir"):
        Appearance(sun_dir=[0.0, 0.0, 0.0])


def _bilinear_periodic(tile, x, y):
    """Reference texture lookup: bilinear, periodic, texel (i, j) at column i, row j."""
    n = tile.shape[0]
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    i0, j0 = x0.astype(int) % n, y0.astype(int) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    t = tile.reshape(n, n, -1).astype(np.float64)
    top = t[j0, i0] * (1 - fx) + t[j0, i1] * fx
    bottom = t[j1, i0] * (1 - fx) + t[j1, i1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.mark.parametrize("material, normal", [(Material.GROUND, (0, 0, 1)), (Material.BARK, (-1, 0.2, 0))])
def test_premixed_texture_matches_direct_tile_lookup(material, normal):
    """The per-material premixed atlas equals mixing bilinear lookups of the raw noise tiles."""
    from depth_nodes.sim import appearance as A

    app = Appearance.randomized(4)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-40.0, 40.0, (1, 500, 3)).astype(np.float32)
    m = int(material)
    normals = np.broadcast_to(np.asarray(normal, np.float32), pts.shape)
    got = app.albedo(pts, normals, np.full((1, 500), m, np.uint8), np.full((1, 500), 1e-4, np.float32))[0]
    u, v = (pts[0, :, 0], pts[0, :, 1]) if material == Material.GROUND else (pts[0, :, 1], pts[0, :, 2])
    u, v = u.astype(np.float64) + A._OFFSET[m], v.astype(np.float64) + A._OFFSET[m]
    fine_levels, coarse = app._tiles
    fine = _bilinear_periodic(fine_levels[..., :3], u / A.FINE_TEXEL_M, v / A.FINE_TEXEL_M)
    crs = _bilinear_periodic(coarse, u / A.COARSE_TEXEL_M, v / A.COARSE_TEXEL_M)[:, 0]
    mix = A._MIX[m].astype(np.float64)
    t = np.clip(mix[0] + 0.5 * (fine @ mix[1:4] + mix[4] * crs), 0.0, 1.0)
    want = app.palette[m, 0] + (app.palette[m, 1] - app.palette[m, 0]) * t[:, None]
    # OpenCV quantises bilinear weights to 1/32 texel: allow a small fraction of the colour span
    np.testing.assert_allclose(got, want, atol=0.006)
    assert np.abs(got - want).mean() < 0.001
    assert np.std(got[:, 0]) > 0.02                    # textured, not flat


def test_shading_threads_do_not_change_images(forest):
    T = pose_from_xyz_yaw(forest.start, 0.3) @ make_pose(R_BODY_OPTICAL)
    one = CameraRenderer(forest, CAM, shade_threads=1)
    three = CameraRenderer(forest, CAM, shade_threads=3)
    a, b = one.stereo(T, 0.1, np.random.default_rng(3)), three.stereo(T, 0.1, np.random.default_rng(3))
    assert a.left.tobytes() == b.left.tobytes() and a.right.tobytes() == b.right.tobytes()
    assert one.rgb(T).tobytes() == three.rgb(T).tobytes()
    with pytest.raises(ValueError, match="shade_threads"):
        CameraRenderer(forest, CAM, shade_threads=0)


def test_radar_samples_detections_uniformly_over_the_field_of_view():
    """Returns are a uniform sample of all detections: upper half sees a near wall, lower a far one."""
    near = o3d.geometry.TriangleMesh.create_box(1, 200, 20).translate((5, -100, 1.5))
    far = o3d.geometry.TriangleMesh.create_box(1, 200, 20).translate((20, -100, -18.5))
    w = World.from_mesh(near + far)
    sim = RadarSimulator(RadarConfig(clutter_fraction=0.0, ghost_fraction=0.0, range_noise_m=0.0))
    T = make_pose(None, [0.0, 0.0, 1.5])
    r = np.concatenate([np.linalg.norm(sim.scan(w, T, [0, 0, 0], np.random.default_rng(i)).points[:, :3], axis=1)
                        for i in range(6)])
    assert len(r) == 6 * sim.config.max_points
    assert abs(np.mean(r < 12.0) - 0.5) < 0.06
    # with few surfaces in view every ray is still tried: a small target yields all its detections
    box = World.from_mesh(o3d.geometry.TriangleMesh.create_box(0.2, 1.75, 1.3).translate((10, -0.875, 0.85)))
    few = RadarSimulator(RadarConfig(clutter_fraction=0.0, ghost_fraction=0.0, dropout=0.0))
    n = [len(few.scan(box, T, [0, 0, 0], np.random.default_rng(i)).points) for i in range(3)]
    # the box covers ~10 x 7.4 deg of the 100 x 30 deg field sampled by 200 x 30 rays: ~150 rays
    assert all(120 < k < 180 for k in n), n
