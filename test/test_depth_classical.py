"""SGBM, metrics, radar encoding and disparity geometry (no networks)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from depth_nodes.camera import PinholeCamera
from depth_nodes.depth.disparity import depth_to_disparity, disparity_to_depth
from depth_nodes.depth.interface import DepthInput, DepthOutput, make_estimator
from depth_nodes.depth.metrics import DepthMetrics, depth_metrics, disparity_metrics
from depth_nodes.depth.radar_encoding import encode_radar, radar_depth_image


def _texture(rng, h, w):
    """Random texture smoothed a little so block matching has a unique answer."""
    noise = rng.integers(0, 256, (h, w), dtype=np.uint8)
    grey = cv2.GaussianBlur(noise, (0, 0), 0.8)
    return np.repeat(grey[..., None], 3, axis=2)


def test_sgbm_recovers_known_shift(rng):
    h, w, shift = 120, 200, 9
    wide = _texture(rng, h, w + shift)
    left, right = wide[:, :w], wide[:, shift:]  # left(x) = right(x - shift)
    cam = PinholeCamera.from_fov(w, h, 70.0)
    est = make_estimator("sgbm")
    disp, conf = est.disparity(left, right)
    inner = disp[10:-10, 40:-10]
    assert np.isfinite(inner).mean() > 0.95
    assert abs(np.nanmedian(inner) - shift) < 0.25
    assert np.all(conf[~np.isfinite(disp)] == 0)
    out = est.estimate(DepthInput(left, cam, right_rgb=right, right_camera=cam.with_baseline(0.12)))
    expected = cam.fx * 0.12 / shift
    assert abs(np.nanmedian(out.depth[10:-10, 40:-10]) - expected) / expected < 0.03


def test_sgbm_matches_the_left_band(rng):
    """OpenCV alone leaves the first num_disparities columns unmatched; the estimator pads the
    pair so that every pixel whose match lies inside the right image (x >= disparity) gets one."""
    from depth_nodes.depth.sgbm import default_num_disparities

    h, w, shift = 120, 200, 9
    wide = _texture(rng, h, w + shift)
    left, right = wide[:, :w], wide[:, shift:]  # left(x) = right(x - shift)
    nd = default_num_disparities(w)
    gl, gr = (cv2.cvtColor(a, cv2.COLOR_RGB2GRAY) for a in (left, right))
    unpadded = make_estimator("sgbm").matcher(w, h).compute(gl, gr)
    assert np.all(unpadded[:, :nd] < 0)  # what the padding is for
    disp, _ = make_estimator("sgbm").disparity(left, right)
    band = disp[10:-10, shift + 3: nd]
    assert np.isfinite(band).mean() > 0.95
    assert abs(np.nanmedian(band) - shift) < 0.25


@pytest.mark.parametrize("shift", [80, 40])
def test_sgbm_near_pass_measures_a_plane_beyond_the_search_range(rng, shift):
    """At 80 px a plane lies beyond the 64 px search: without the near pass SGBM has no right
    answer there (what it matches is wrong); with it, the half-size pair measures the plane.
    At 40 px, inside the range, the near pass changes nothing."""
    from helpers_stereo import textured_plane

    left, right = textured_plane(rng, shift)
    centre = (slice(40, 200), slice(100, 300))
    with_near, conf = make_estimator("sgbm", num_disparities=64).disparity(left, right)
    without, _ = make_estimator("sgbm", num_disparities=64, near_pass=False).disparity(left, right)
    if shift == 80:
        assert np.mean(np.abs(with_near[centre] - shift) < 2) > 0.95 and np.all(conf[centre] > 0.9)
        assert np.mean(np.abs(without[centre] - shift) < 2) < 0.05
    else:
        assert np.mean(np.abs(with_near[centre] - shift) < 1) > 0.95
        np.testing.assert_array_equal(with_near, without)


def test_sgbm_confidence_falls_with_disparity_and_is_zero_without_one():
    from depth_nodes.depth.sgbm import disparity_confidence

    conf = disparity_confidence(np.array([np.nan, -0.25, 0.0, 0.5, 1.0, 10.0], np.float32))
    np.testing.assert_allclose(conf, [0.0, 0.0, 0.0, 0.0, 0.5, 0.95], atol=1e-6)


def _subpixel_pair(rng, h=96, w=160, over=8, span=33):
    """A pair whose disparity steps through every 1/8 px from 5 px down the rows (``span``
    steps; the default 33 ends at 9 px): both views box-filter one texture ``over`` times finer
    than the pixels, as a camera's pixels integrate light, so a fractional shift is exact.
    Returns (left, right, gt disparity)."""
    fine = cv2.GaussianBlur(rng.uniform(0, 255, (h, (w + 16) * over)).astype(np.float32), (0, 0), over * 0.7)
    pad = 16 * over
    right = fine[:, pad: pad + w * over].reshape(h, w, over).mean(axis=2)
    steps = (np.arange(h) * span // h) + 5 * over  # disparity in 1/over px, 5.0 .. 9.0 by default
    # left(x) = right(x - d)
    left = np.stack([fine[y, pad - s: pad - s + w * over].reshape(w, over).mean(axis=1) for y, s in enumerate(steps)])
    as_rgb = lambda a: np.repeat(np.clip(np.rint(a), 0, 255).astype(np.uint8)[..., None], 3, axis=2)  # noqa: E731
    return as_rgb(left), as_rgb(right), np.repeat((steps / over)[:, None], w, axis=1)


def test_sgbm_phase_shifted_passes_cut_pixel_locking(rng):
    left, right, gt = _subpixel_pair(rng)
    inner = (slice(6, -6), slice(30, -6))
    err = {}
    for passes in (1, 2, 4):
        disp, _ = make_estimator("sgbm", passes=passes, require_agreement=False).disparity(left, right)
        e = np.abs(disp - gt)[inner]
        assert np.isfinite(e).mean() > 0.95
        err[passes] = float(np.nanmean(e))
        if passes == 1:
            density = np.isfinite(disp).mean()
        else:  # without require_agreement validity is the first pass's
            assert np.isfinite(disp).mean() == density
    # one pass is pulled toward whole pixels; averaging phase-shifted passes removes most of that
    assert err[2] < 0.7 * err[1] and err[4] <= err[2] * 1.1, err


def test_sgbm_flipped_pass_cancels_the_vertical_path_lag(monkeypatch):
    """On a surface whose disparity grows down the image (like the ground) an upright pass's
    top-down cost paths lag and read low; the second pass runs on the flipped pair (paths from
    below) and cancels most of that bias."""
    from depth_nodes.depth.sgbm import SgbmEstimator

    pairs = [_subpixel_pair(np.random.default_rng(seed), span=64) for seed in (0, 1)]  # 5 -> 13 px
    inner = (slice(6, -6), slice(30, -6))

    def signed_bias():
        errs = [(make_estimator("sgbm", passes=2).disparity(left, right)[0] - gt)[inner] for left, right, gt in pairs]
        return float(np.nanmean(np.concatenate([e.ravel() for e in errs])))

    flipped = signed_bias()
    shifted_pass = SgbmEstimator._shifted_pass

    def upright_pass(matcher, gl, gr, phase, flip):
        return shifted_pass(matcher, gl, gr, phase, False)

    monkeypatch.setattr(SgbmEstimator, "_shifted_pass", staticmethod(upright_pass))
    upright = signed_bias()
    assert upright < -0.03, upright  # both passes lag the same way
    assert abs(flipped) < 0.6 * abs(upright), (flipped, upright)


def test_sgbm_agreement_of_all_passes_rejects_mismatches(rng):
    """``require_agreement`` keeps a subset of the first pass's pixels, with the same values there."""
    h, w, shift = 96, 160, 7
    wide = _texture(rng, h, w + shift)
    left, right = wide[:, :w].copy(), wide[:, shift:].copy()
    right[30:60, 60:100] = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)  # an area without a true match
    strict, _ = make_estimator("sgbm", passes=2).disparity(left, right)
    loose, _ = make_estimator("sgbm", passes=2, require_agreement=False).disparity(left, right)
    assert not np.any(np.isfinite(strict) & ~np.isfinite(loose))
    both = np.isfinite(strict)
    np.testing.assert_array_equal(strict[both], loose[both])
    assert np.isfinite(strict).sum() < np.isfinite(loose).sum()
    bad = lambda d: np.sum(np.abs(d - shift) > 1)  # noqa: E731
    assert bad(strict) < bad(loose)


def test_sgbm_parameter_validation():
    with pytest.raises(ValueError, match="multiple of 16"):
        make_estimator("sgbm", num_disparities=20)
    with pytest.raises(ValueError, match="block_size"):
        make_estimator("sgbm", block_size=4)
    with pytest.raises(ValueError, match="passes"):
        make_estimator("sgbm", passes=0)
    with pytest.raises(ValueError, match="passes"):
        make_estimator("stereo-hybrid", weights="random-init", passes=1.5)


def test_depth_metrics_hand_computed():
    gt = np.array([[2.0, 4.0], [8.0, np.nan]], np.float32)
    pred = np.array([[2.5, 4.0], [np.nan, 1.0]], np.float32)
    m = depth_metrics(pred, gt)
    # evaluated pixels: (2.5 vs 2) and (4 vs 4); the NaN prediction lowers density only
    assert m["n_pixels_gt"] == 3 and m["n_pixels_evaluated"] == 2
    assert m["density"] == pytest.approx(2 / 3)
    assert m["abs_rel"] == pytest.approx((0.5 / 2 + 0) / 2)
    assert m["sq_rel"] == pytest.approx((0.25 / 2) / 2)
    assert m["rmse"] == pytest.approx(math.sqrt(0.25 / 2))
    assert m["rmse_log"] == pytest.approx(math.sqrt(math.log(1.25) ** 2 / 2))
    assert m["delta1"] == pytest.approx(0.5)  # ratio exactly 1.25 is not < 1.25
    assert m["delta2"] == pytest.approx(1.0)
    assert m["delta1_dense"] == pytest.approx(1 / 3)
    assert m["bins"]["0-5"]["n_pixels_evaluated"] == 2
    assert m["bins"]["5-10"]["n_pixels_gt"] == 1 and m["bins"]["5-10"]["abs_rel"] is None
    assert m["bins"]["20+"]["density"] is None
    # the one pixel without GT is predicted at 1 m: a phantom obstacle where nothing is
    assert m["n_pixels_no_gt"] == 1 and m["no_gt_near_rate"] == 1.0
    far = depth_metrics(np.array([[2.0, 30.0, np.nan]], np.float32), np.array([[2.0, np.nan, 0.0]], np.float32))
    assert far["n_pixels_no_gt"] == 2 and far["no_gt_near_rate"] == 0.0  # 30 m and NaN are not near
    assert depth_metrics(np.ones((1, 2)), np.ones((1, 2)))["no_gt_near_rate"] is None


def test_depth_metrics_pool_over_frames():
    acc = DepthMetrics()
    acc.add(np.array([[1.0]]), np.array([[2.0]]))
    acc.add(np.array([[3.0, 3.0, 3.0]]), np.array([[3.0, 3.0, 3.0]]))
    assert acc.result()["abs_rel"] == pytest.approx(0.5 / 4)
    with pytest.raises(ValueError, match="shape"):
        acc.add(np.zeros((2, 2)), np.zeros((2, 3)))


def test_depth_metrics_disparity_errors_of_a_stereo_rig():
    fb = 16.0  # fx * baseline, px m
    gt = np.array([[2.0, 4.0, 8.0, 16.0, 32.0, np.nan]])
    err = np.array([[0.1, -0.1, 0.1, 0.3, 0.1, 0.0]])  # disparity errors (px)
    pred = fb / (fb / np.where(np.isfinite(gt), gt, 1.0) + err)
    m = DepthMetrics()
    m.add(pred, gt, disparity_scale=fb)
    r = m.result()
    assert r["disparity_epe_px"] == pytest.approx((0.1 * 4 + 0.3) / 5)
    assert r["disparity_error_px_median"] == pytest.approx(0.1, abs=0.005)
    assert r["bins"]["10-20"]["disparity_epe_px"] == pytest.approx(0.3)
    assert r["bins"]["0-5"]["disparity_epe_px"] == pytest.approx(0.1)
    # the same disparity error is a larger depth error the farther the surface
    assert r["bins"]["20+"]["abs_rel"] > r["bins"]["5-10"]["abs_rel"] > r["bins"]["0-5"]["abs_rel"]
    assert "disparity_epe_px" not in depth_metrics(pred, gt)  # a monocular estimate has no disparity
    with pytest.raises(ValueError, match="disparity_scale"):
        m.add(pred, gt, disparity_scale=0.0)


def test_disparity_metrics_count_invalid_as_bad():
    gt = np.array([10.0, 10.0, 10.0, 10.0, np.inf])
    pred = np.array([10.5, 11.5, 13.0, np.nan, 0.0])
    m = disparity_metrics(pred, np.where(np.isfinite(gt), gt, np.nan))
    assert m["n_pixels_gt"] == 4 and m["density"] == pytest.approx(0.75)
    assert m["epe"] == pytest.approx((0.5 + 1.5 + 3.0) / 3)
    assert m["bad1"] == pytest.approx(3 / 4)
    assert m["bad2"] == pytest.approx(2 / 4)
    assert m["bad4"] == pytest.approx(1 / 4)


def test_depth_output_keeps_only_positive_finite_depth_and_bounds_confidence():
    cam = PinholeCamera(7, 2, [[50.0, 0, 3.0], [0, 50.0, 0.5], [0, 0, 1]])
    depth = np.array([[1.5, np.nan, np.inf, -np.inf, 0.0, -2.0, 3.0],
                      [2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]], np.float64)
    conf = np.array([[0.5, 0.9, 0.9, 0.9, 0.9, 0.9, np.nan],
                     [-0.5, 1.5, np.inf, -np.inf, np.nan, 0.25, 1.0]], np.float64)
    out = DepthOutput(depth=depth, confidence=conf, camera=cam)
    assert out.depth.dtype == out.confidence.dtype == np.float32
    np.testing.assert_array_equal(out.depth, np.array([[1.5, np.nan, np.nan, np.nan, np.nan, np.nan, 3.0],
                                                       [2, 4, 5, 6, 7, 8, 9]], np.float32))
    # invalid depth has confidence 0; NaN confidence counts as 0; the rest is clipped to [0, 1]
    np.testing.assert_array_equal(out.confidence, np.array([[0.5, 0, 0, 0, 0, 0, 0],
                                                            [0, 1, 1, 0, 0, 0.25, 1]], np.float32))
    assert out.depth is not depth and out.confidence is not conf
    with pytest.raises(ValueError, match="must both be"):
        DepthOutput(depth=depth[:, :3], confidence=conf, camera=cam)


def test_radar_encoding_pixel_and_depth():
    cam = PinholeCamera(64, 48, [[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    # x = (u - cx) z / fx: a point at u=40, v=10, z=8 m; a farther one on the same pixel; one behind
    z = 8.0
    p = np.array([[(40 - 31.5) * z / 50, (10 - 23.5) * z / 50, z, 1.0, 5.0],
                  [(40 - 31.5) * 20 / 50, (10 - 23.5) * 20 / 50, 20.0, 0.0, 1.0],
                  [0.0, 0.0, -3.0, 0.0, 1.0]], np.float32)
    enc = encode_radar(p, cam)
    assert enc.shape == (2, 48, 64) and enc.dtype == np.float32
    assert enc[1].sum() == 1 and enc[1, 10, 40] == 1
    assert enc[0, 10, 40] == pytest.approx(1 / z)  # nearest point wins
    assert radar_depth_image(enc)[10, 40] == pytest.approx(z)
    dil = encode_radar(p, cam, dilate=1)
    assert dil[1].sum() == 9 and dil[0, 11, 41] == pytest.approx(1 / z)
    assert not encode_radar(None, cam).any() and not encode_radar(np.zeros((0, 5)), cam).any()


def test_disparity_depth_round_trip():
    depth = np.array([[1.0, 10.0, np.nan]], np.float32)
    disp = depth_to_disparity(depth, 200.0, 0.1)
    np.testing.assert_allclose(disp[0, :2], [20.0, 2.0])
    assert np.isnan(disp[0, 2])
    back = disparity_to_depth(np.array([[20.0, 2.0, 0.1, np.nan]]), 200.0, 0.1)
    np.testing.assert_allclose(back[0, :2], [1.0, 10.0], rtol=1e-6)
    assert np.isnan(back[0, 2:]).all()  # below the minimum disparity / invalid


def test_eval_stereo_real_sgbm_json(capsys):
    from depth_nodes.cli import main

    assert main(["eval", "stereo-real", "--json", "--weights", "/nonexistent/stereo.safetensors"]) == 0
    import json

    res = json.loads(capsys.readouterr().out)
    assert 0.0 < res["sgbm"]["bad2"] < 1.0
    assert 0.0 < res["sgbm"]["density"] <= 1.0 and res["sgbm"]["epe"] > 0
    assert res["stereo_net"]["status"] == "untrained" and "stereo.safetensors" in res["stereo_net"]["reason"]
    assert res["threads"] == 2


def test_only_the_stereo_network_says_its_nan_pixels_are_far():
    from depth_nodes.depth.runtime import MonoRadarEstimator, StereoEstimator

    assert StereoEstimator.no_return_is_far is True          # NaN = disparity below the minimum
    assert make_estimator("sgbm").no_return_is_far is False   # NaN = unmatched
    assert MonoRadarEstimator.no_return_is_far is False
