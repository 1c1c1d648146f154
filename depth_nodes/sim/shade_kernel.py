"""Compiled per-pixel camera shading: surface geometry, then texture, lighting and sky.

The kernels compute, pixel by pixel in float32, what the earlier vectorised numpy/OpenCV
shading computed (the same operations in the same order), so images stay the same: the
packaged networks were trained on them. Texture lookups reproduce OpenCV's ``remap``:

* the fine atlas (two channels) like its fixed-point path: coordinates rounded to 1/32
  texel, weights ``(1-fy)(1-fx), (1-fy)fx, fy(1-fx), fy fx`` summed in that order;
* the coarse atlas (one channel) like its float SIMD path: two fused multiply-add lerps
  along u, then one along v.

``log2`` of the texture level of detail, the sky gradient's power and the sun dot product
stay in numpy between the two kernels (numpy's vectorised results are not reproducible
bit for bit in scalar code).
Texel coordinates beyond about 30000 (|u| > 600 m) wrap exactly here, where the numpy
shading wrapped the whole row block in float first.
Kernels release the GIL; callers split images into row blocks on a thread pool.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from depth_nodes.sim.materials import Material

F32 = np.float32
_F0, _F1, _HALF = F32(0.0), F32(1.0), F32(0.5)
_TAB, _INV_TAB = F32(32.0), F32(1.0 / 32.0)    # fixed-point remap: 1/32 texel steps
_TILE_F, _INV_TILE = F32(256.0), F32(1.0 / 256.0)
# brick courses (m), mortar line fractions, hash amplitude; floor tiles likewise
_BRICK_U, _BRICK_V, _MORTAR_V, _MORTAR_U = F32(0.22), F32(0.075), F32(0.13), F32(0.05)
_BRICK_LINE_M, _BRICK_VAR, _MORTAR = F32(0.02), F32(0.45), F32(0.95)
_TILE_M, _GROUT, _TILE_LINE_M, _TILE_VAR, _GROUT_T = F32(0.5), F32(0.03), F32(0.03), F32(0.3), F32(0.05)
_FADE0 = F32(1.5)
_BRICK, _FLOOR = int(Material.BRICK), int(Material.FLOOR)


@intrinsic
def _fma(typingctx, a, b, c):
    """float32 ``a * b + c`` rounded once (what OpenCV's SIMD lerps compute)."""
    if not all(x == types.float32 for x in (a, b, c)):
        return None                       # float32 only: a typing error, never a silent cast
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
        return builder.call(fn, args)

    return sig, codegen


@numba.njit(cache=True, nogil=True, error_model="numpy")
def surface_geometry(t_hit, normals, dirs, origin, ray_norm, inv_ray_norm, inv_fx, pts, footprint, sky_sin):
    """World hit points and pixel footprints of N pixel rays (all float32).

    ``t_hit`` (N,) depth along optical z (non-finite on miss, used as 0), ``normals`` and
    ``dirs`` (N, 3) unit normals and world ray directions with optical z = 1, ``origin`` (3,)
    camera centre, ``ray_norm`` / ``inv_ray_norm`` (N,) ray lengths and their inverses,
    ``inv_fx`` 1 / focal length (pixels). Writes ``pts`` (N, 3) world metres, ``footprint``
    (N,) the pixel size on the surface in metres (range / f, stretched by grazing incidence
    up to 4x) and, for the sky pixels (non-finite ``t_hit``) in order, ``sky_sin`` the sine
    of the ray elevation clipped to [0, 1]. Returns the number of sky pixels.
    """
    n_sky = 0
    for i in range(t_hit.shape[0]):
        t = t_hit[i]
        if not np.isfinite(t):
            t = _F0
            d0, d1, d2 = dirs[i, 0], dirs[i, 1], dirs[i, 2]
            sky_sin[n_sky] = min(max(d2 / np.sqrt(d0 * d0 + d1 * d1 + d2 * d2), _F0), _F1)
            n_sky += 1
        for k in range(3):
            pts[i, k] = dirs[i, k] * t + origin[k]
        cos_inc = abs(normals[i, 0] * dirs[i, 0] + normals[i, 1] * dirs[i, 1] + normals[i, 2] * dirs[i, 2])
        cos_inc = min(max(cos_inc * inv_ray_norm[i], F32(0.25)), _F1)
        footprint[i] = t * ray_norm[i] * inv_fx / cos_inc
    return n_sky


@numba.njit(cache=True, nogil=True)
def _hash01(a, b, salt):
    """Deterministic pseudo-random float32 in [0, 1) per integer cell (a, b) (float32 integers)."""
    h = (np.int64(a) * 73856093) ^ (np.int64(b) * 19349663) ^ (salt * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return F32((h ^ (h >> 16)) & 0xFFFF) / F32(65536.0)


@numba.njit(cache=True, nogil=True)
def _periodic_v(v, scale, row0):
    """Atlas row coordinate: texel v wrapped into [0, TILE] plus the material's first row."""
    my = v * scale
    my = my - np.floor(my * _INV_TILE) * _TILE_F
    return my + row0


@numba.njit(cache=True, nogil=True)
def _atlas_row(iy, rows):
    """Row index wrapped into the atlas (only needed for rows a zero weight touches, or NaN input)."""
    if iy < 0 or iy >= rows:
        iy = iy % rows
    return iy


@numba.njit(cache=True, nogil=True, error_model="numpy")
def shade_pixels(t_hit, pts, normals, material, footprint, lod, irradiance, sky_w, fine, coarse, colors,
                 offsets, row0s, fine_scale, coarse_scale, sky, out):
    """Radiance (N, 3) float32 of N pixels into ``out``.

    Surface pixels (finite ``t_hit``): tri-planar texture from the fine atlas ``fine``
    (rows, 256, 2: sharp and prefiltered premixed noise, blended by ``lod`` = log2 of the
    footprint in fine texels) and the coarse atlas ``coarse`` (rows, 256: base level plus
    coarse noise), brick courses and floor tiles, clipped to [0, 1], coloured by
    ``colors`` (materials, 6: dark RGB, light - dark) and scaled by ``irradiance`` (N,).
    ``material`` ids at or above the number of materials use the last one; ``offsets`` /
    ``row0s`` (materials,) are each material's texture offset (m) and first atlas row;
    ``fine_scale`` / ``coarse_scale`` texels per metre. Sky pixels (non-finite ``t_hit``):
    ``sky[0] + sky[1] * sky_w[k]`` for the k-th sky pixel, with ``sky`` (2, 3) the horizon
    colour and zenith - horizon and ``sky_w`` the zenith weights (NaN past its end).
    Returns the number of sky pixels.
    """
    n_sky = 0
    n_mat = colors.shape[0]
    rows_f, rows_c = fine.shape[0], coarse.shape[0]
    for i in range(pts.shape[0]):
        if not np.isfinite(t_hit[i]):
            a = sky_w[n_sky] if n_sky < sky_w.shape[0] else F32(np.nan)
            n_sky += 1
            for c in range(3):
                out[i, c] = sky[0, c] + sky[1, c] * a
            continue
        m = min(material[i], n_mat - 1)
        an0, an1, an2 = abs(normals[i, 0]), abs(normals[i, 1]), abs(normals[i, 2])
        flat = an2 >= max(an0, an1)
        u = pts[i, 1] if (an0 > an1 and not flat) else pts[i, 0]
        v = pts[i, 1] if flat else pts[i, 2]
        irr = irradiance[i]
        uo, vo = u + offsets[m], v + offsets[m]
        if not (np.isfinite(uo) and np.isfinite(vo)):
            for c in range(3):
                out[i, c] = np.nan
            continue
        # fine atlas, fixed-point bilinear
        x = np.int64(np.rint(uo * fine_scale * _TAB))
        y = np.int64(np.rint(_periodic_v(vo, fine_scale, row0s[m]) * _TAB))
        fx, fy = F32(x & 31) * _INV_TAB, F32(y & 31) * _INV_TAB
        ix0, ix1 = (x >> 5) & 255, ((x >> 5) + 1) & 255
        iy0 = _atlas_row(y >> 5, rows_f)
        iy1 = _atlas_row(iy0 + 1, rows_f)
        w0, w1, w2, w3 = (_F1 - fy) * (_F1 - fx), (_F1 - fy) * fx, fy * (_F1 - fx), fy * fx
        sharp = fine[iy0, ix0, 0] * w0 + fine[iy0, ix1, 0] * w1 + fine[iy1, ix0, 0] * w2 + fine[iy1, ix1, 0] * w3
        blurred = fine[iy0, ix0, 1] * w0 + fine[iy0, ix1, 1] * w1 + fine[iy1, ix0, 1] * w2 + fine[iy1, ix1, 1] * w3
        # coarse atlas, float bilinear with fused lerps
        cx = uo * coarse_scale
        cy = _periodic_v(vo, coarse_scale, row0s[m])
        x0, y0 = np.floor(cx), np.floor(cy)
        ax, ay = cx - x0, cy - y0
        jx0 = np.int64(x0) & 255
        jx1 = (jx0 + 1) & 255
        jy0 = _atlas_row(np.int64(y0), rows_c)
        jy1 = _atlas_row(jy0 + 1, rows_c)
        top = _fma(ax, coarse[jy0, jx1] - coarse[jy0, jx0], coarse[jy0, jx0])
        bottom = _fma(ax, coarse[jy1, jx1] - coarse[jy1, jx0], coarse[jy1, jx0])
        t = _fma(ay, bottom - top, top)
        # level of detail: blend towards the prefiltered tile from 1.4 to 5.6 texels per pixel
        w_blur = min(max(lod[i] * _HALF - F32(0.25), _F0), _F1)
        t = t + sharp
        t = t + (blurred - sharp) * w_blur
        fp = footprint[i]
        if m == _BRICK:
            bv = v / _BRICK_V
            row = np.floor(bv)
            bu = u / _BRICK_U + _HALF * F32(np.int64(row) & 1)
            col = np.floor(bu)
            fade = min(max(_FADE0 - fp / _BRICK_LINE_M, _F0), _F1)
            t = t + _BRICK_VAR * (_hash01(row, col, 1) - _HALF)
            if (bv - row) < _MORTAR_V or (bu - col) < _MORTAR_U:
                t = t + (_MORTAR - t) * fade
        elif m == _FLOOR:
            tu, tv = u / _TILE_M, v / _TILE_M
            iu, iv = np.floor(tu), np.floor(tv)
            fade = min(max(_FADE0 - fp / _TILE_LINE_M, _F0), _F1)
            t = t + _TILE_VAR * (_hash01(iu, iv, 2) - _HALF)
            if (tu - iu) < _GROUT or (tv - iv) < _GROUT:
                t = t + (_GROUT_T - t) * fade
        t = min(max(t, _F0), _F1) * irr
        for c in range(3):
            out[i, c] = colors[m, 3 + c] * t + colors[m, c] * irr
    return n_sky


@numba.njit(cache=True, nogil=True)
def quantize(radiance, gain, noise, noise_gain, out):
    """8-bit pixel values: ``radiance * gain [+ noise * noise_gain] + 0.5`` clipped to [0, 255], truncated.

    ``radiance`` and ``noise`` (empty for none) are flat float32 arrays, ``gain`` and
    ``noise_gain`` float32, ``out`` a flat uint8 array like ``radiance``.
    """
    noisy = noise.shape[0] > 0
    for i in range(radiance.shape[0]):
        x = radiance[i] * gain
        if noisy:
            x = x + noise[i] * noise_gain
        out[i] = np.uint8(min(max(x + _HALF, _F0), F32(255.0)))
