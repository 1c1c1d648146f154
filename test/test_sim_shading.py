"""Camera shading: the compiled kernel renders the images the numpy shading did.

The packaged networks were trained on these images, so the look must not change.
``test/data/sim_shading_ref.npz`` holds pixels rendered by the numpy/OpenCV shading
(commit 0f48b3a) for the cases below: a seeded sample of pixels of each 320x240 image
plus the mean of every channel over the whole image. Regenerate it (only when the
look is *meant* to change) with ``python test/test_sim_shading.py``.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from depth_nodes.geometry import make_pose, pose_from_xyz_yaw
from depth_nodes.sim.appearance import Appearance
from depth_nodes.sim.materials import Material
from depth_nodes.sim.render import CameraRenderer
from depth_nodes.sim.rig import SensorRig
from depth_nodes.sim.world import WorldSpec, build_world

REF = Path(__file__).parent / "data" / "sim_shading_ref.npz"
SAMPLES = 2500                                  # stored pixels per image
WORLDS = {"forest": WorldSpec("forest", 3, "medium", (30.0, 20.0)),
          "urban": WorldSpec("urban", 4, "medium", (40.0, 30.0)),
          "indoor": WorldSpec("indoor", 5, "medium")}
# body offsets from the world start (x, y, z m), yaw and camera pitch (rad, + looks down)
POSES = ((0.0, 0.0, 0.0, 0.0, 0.0), (1.5, 0.5, 0.4, 0.6, 0.35), (3.0, -0.8, -0.3, -1.2, -0.15))


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


@lru_cache(maxsize=None)
def _world(kind: str):
    # the reference predates the distant backdrop terrain: compare on the worlds without it
    w = build_world(WORLDS[kind])
    keep = len(w.triangles) - w.backdrop_triangles
    return replace(w, triangles=w.triangles[:keep], materials=w.materials[:keep], backdrop_triangles=0)


def _renderer(kind: str, shadows: bool = False, shade_threads: int | None = None) -> CameraRenderer:
    world = _world(kind)
    return CameraRenderer(world, SensorRig().camera, Appearance.for_world(world.spec, shadows=shadows),
                          shade_threads=shade_threads)


def _cam_pose(kind: str, k: int) -> np.ndarray:
    dx, dy, dz, yaw, pitch = POSES[k]
    world = _world(kind)
    T_wb = pose_from_xyz_yaw(np.asarray(world.start) + [dx, dy, dz], yaw) @ make_pose(_rot_y(pitch))
    return T_wb @ SensorRig().T_body_camera


def render_cases(shade_threads: int | None = None) -> dict[str, np.ndarray]:
    """Every reference image (H, W, 3) uint8 by case name."""
    out = {}
    for kind in WORLDS:
        r = _renderer(kind, shade_threads=shade_threads)
        for k in range(len(POSES)):
            T = _cam_pose(kind, k)
            out[f"{kind}_{k}_clean"] = r.rgb(T)
            out[f"{kind}_{k}_noisy"] = r.rgb(T, np.random.default_rng(100 + k))
    r = _renderer("forest", shade_threads=shade_threads)
    pair = r.stereo(_cam_pose("forest", 1), 0.1, np.random.default_rng(7))
    out["forest_stereo_left"], out["forest_stereo_right"] = pair.left, pair.right
    out["forest_blur"] = r.rgb_motion_blur(_cam_pose("forest", 0), _cam_pose("forest", 1), samples=3)
    out["urban_shadows"] = _renderer("urban", shadows=True, shade_threads=shade_threads).rgb(_cam_pose("urban", 1))
    return out


def _sample_index(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).choice(shape[0] * shape[1], SAMPLES, replace=False)


def write_reference(path: Path = REF) -> None:
    """Store the sampled pixels and channel means of :func:`render_cases` (run at the reference commit)."""
    arrays = {}
    for name, img in render_cases().items():
        arrays[name] = img.reshape(-1, 3)[_sample_index(img.shape)]
        arrays[name + "__mean"] = img.reshape(-1, 3).mean(axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


@pytest.fixture(scope="module")
def rendered():
    return render_cases()


@pytest.fixture(scope="module")
def reference():
    with np.load(REF, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_images_match_the_numpy_shading(rendered, reference):
    """Sampled pixels equal the reference within 1 on >= 99.9 % (never more than 3); means agree."""
    assert sorted(rendered) == sorted(k for k in reference if not k.endswith("__mean"))
    diffs = []
    for name, img in rendered.items():
        assert img.shape == (240, 320, 3) and img.dtype == np.uint8
        got = img.reshape(-1, 3)[_sample_index(img.shape)].astype(int)
        d = np.abs(got - reference[name].astype(int))
        assert d.max() <= 3, f"{name}: max difference {d.max()}"
        np.testing.assert_allclose(img.reshape(-1, 3).mean(axis=0), reference[name + "__mean"], atol=0.02,
                                   err_msg=name)
        diffs.append(d.max(axis=1))
    d = np.concatenate(diffs)
    assert np.mean(d <= 1) >= 0.999
    assert np.mean(d == 0) >= 0.995


def test_cases_are_textured_and_noise_changes_pixels(rendered):
    """The comparison is meaningful: images are not flat and the noisy renders differ from the clean ones."""
    for kind in WORLDS:
        clean, noisy = rendered[f"{kind}_0_clean"], rendered[f"{kind}_0_noisy"]
        assert clean.std() > 10.0, kind
        assert np.mean(clean != noisy) > 0.3, kind
    assert not np.array_equal(rendered["urban_shadows"], rendered["urban_1_clean"])


def test_cases_cover_every_material_and_the_sky():
    """The reference views see all materials (brick and floor patterns included) and sky."""
    seen = np.zeros(256, bool)
    for kind in WORLDS:
        r = _renderer(kind)
        for k in range(len(POSES)):
            seen[np.unique(r.cast(_cam_pose(kind, k))[0].material)] = True
    assert seen[list(Material)].all(), np.flatnonzero(seen)


def test_to_uint8_rounds_like_numpy():
    """Exposure, noise and quantisation equal the float32 numpy formula exactly (clipping included)."""
    rng = np.random.default_rng(4)
    rad = rng.uniform(-0.2, 1.3, (37, 23, 3)).astype(np.float32)
    noise = rng.standard_normal(rad.shape).astype(np.float32)
    for sigma, nz in ((2.0, noise), (0.0, noise), (2.0, None)):
        app = Appearance(exposure=1.07, noise_sigma=sigma)
        img = rad * np.float32(255.0 * 1.07)
        if nz is not None and sigma > 0:
            img += nz * np.float32(sigma)
        want = np.clip(img + np.float32(0.5), 0, 255).astype(np.uint8)
        assert np.array_equal(app.to_uint8(rad, nz), want)
    with pytest.raises(ValueError, match="noise"):
        Appearance().to_uint8(rad, noise[:3])


def test_albedo_and_radiance_reject_bad_input():
    app = Appearance()
    pts = np.zeros((2, 5, 3), np.float32)
    normals = np.tile(np.float32([0, 0, 1]), (2, 5, 1))
    fp = np.full((2, 5), 0.01, np.float32)
    mat = np.zeros((2, 5), np.uint8)
    with pytest.raises(ValueError, match="normals"):
        app.albedo(pts, normals[:, :4], mat, fp)
    with pytest.raises(ValueError, match="material"):
        app.albedo(pts, normals, mat[:1], fp)
    n = 10
    t_hit = np.full(n, np.inf, np.float32)              # all sky: needs one sky_sin per pixel
    args = (t_hit, pts.reshape(n, 3), normals.reshape(n, 3), mat.reshape(n), fp.reshape(n), np.ones(n, np.float32))
    with pytest.raises(ValueError, match="sky_sin"):
        app.radiance(*args, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="irradiance"):
        app.radiance(*args[:5], np.ones(n), np.zeros(n, np.float32))
    sky = app.radiance(*args, np.linspace(0, 1, n, dtype=np.float32))
    np.testing.assert_allclose(sky[0], app.sky_horizon, atol=1e-6)
    np.testing.assert_allclose(sky[-1], app.sky_zenith, atol=1e-6)


def test_non_finite_points_shade_to_nan_not_garbage():
    app = Appearance()
    pts = np.random.default_rng(1).uniform(-5, 5, (1, 6, 3)).astype(np.float32)
    pts[0, 1, 0], pts[0, 4, 2] = np.nan, np.inf
    normals = np.tile(np.float32([0, 1, 0]), (1, 6, 1))
    color = app.albedo(pts, normals, np.full((1, 6), 4, np.uint8), np.full((1, 6), 0.01, np.float32))
    bad = np.zeros(6, bool)
    bad[[1, 4]] = True
    assert np.isnan(color[0, bad]).all() and np.isfinite(color[0, ~bad]).all()


def test_thread_count_does_not_change_images(rendered):
    one = render_cases(shade_threads=1)
    for name in ("forest_1_noisy", "forest_stereo_right", "indoor_2_clean"):
        assert one[name].tobytes() == rendered[name].tobytes(), name


if __name__ == "__main__":
    write_reference()
    print(f"wrote {REF} ({REF.stat().st_size} bytes)")
