"""Procedural appearance: world-fixed textures per material, lighting and sensor effects.

Textures are functions of the 3D world position of a surface point (tri-planar
projection onto the plane most facing the surface normal), so the same point
looks the same from every camera: stereo matching and multi-view consistency
work like on real surfaces. Each world seed draws its own palette, sun and
noise tiles (domain randomisation).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from depth_nodes.sim.materials import N_MATERIALS, Material

TILE = 256                 #: texels per side of the periodic noise tiles
FINE_TEXEL_M = 0.02        #: metres per texel of the fine tile
COARSE_TEXEL_M = 0.3       #: metres per texel of the coarse tile
_BLUR_SIGMA = 2.5         #: texel sigma of the prefiltered copy of the fine tile (a two-level mipmap)

_REMAP_SAFE = 30000.0      # largest |texel coordinate| handed to cv2.remap without wrapping first
_OFFSET = (np.arange(N_MATERIALS) * 17.3).astype(np.float32)  # decorrelates materials sharing a tile
_ATLAS_ROWS = TILE + 2     # rows per material in a texture atlas: the tile and one wrapped row each side
_ATLAS_ROW0 = (np.arange(N_MATERIALS) * _ATLAS_ROWS + 1).astype(np.float32)  # atlas row of texel v = 0

# Base colours (dark, light) per material, linear-ish RGB in [0, 1].
_PALETTE = np.array([
    [[0.22, 0.20, 0.12], [0.55, 0.50, 0.30]],   # GROUND: soil and dry grass
    [[0.16, 0.12, 0.09], [0.48, 0.40, 0.32]],   # BARK
    [[0.10, 0.22, 0.06], [0.55, 0.78, 0.32]],   # FOLIAGE
    [[0.38, 0.14, 0.09], [0.70, 0.38, 0.25]],   # BRICK
    [[0.38, 0.38, 0.36], [0.72, 0.71, 0.68]],   # CONCRETE
    [[0.22, 0.25, 0.28], [0.60, 0.63, 0.66]],   # METAL
    [[0.30, 0.18, 0.08], [0.66, 0.47, 0.27]],   # WOOD
    [[0.55, 0.53, 0.48], [0.88, 0.86, 0.80]],   # PLASTER
    [[0.25, 0.24, 0.26], [0.62, 0.58, 0.52]],   # FLOOR
])
# Mixing weights per material: [base, fine, fine speckle, streaks, coarse].
_MIX = np.array([
    [0.50, 0.20, 0.18, 0.00, 0.22],   # GROUND
    [0.45, 0.10, 0.08, 0.30, 0.10],   # BARK
    [0.50, 0.35, 0.45, 0.00, 0.15],   # FOLIAGE
    [0.50, 0.10, 0.08, 0.00, 0.08],   # BRICK (plus brick pattern)
    [0.50, 0.16, 0.12, 0.00, 0.16],   # CONCRETE
    [0.45, 0.10, 0.06, 0.20, 0.10],   # METAL
    [0.50, 0.08, 0.06, 0.30, 0.08],   # WOOD
    [0.55, 0.16, 0.12, 0.00, 0.14],   # PLASTER
    [0.50, 0.14, 0.10, 0.00, 0.10],   # FLOOR (plus tiles)
], dtype=np.float32)


def _noise_tiles(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Periodic band-limited noise: fine (TILE, TILE, 6: sharp + blurred) and coarse (TILE, TILE).

    Fine channels: 0 isotropic 1/f noise, 1 high-frequency speckle, 2 streaks that vary
    fast along u and slowly along v (bark, wood grain). Each channel has zero mean and unit std.
    """
    f = np.fft.fftfreq(TILE) * TILE
    fu, fv = np.meshgrid(f, f, indexing="xy")
    fr = np.hypot(fu, fv)
    fr[0, 0] = 1.0

    def shaped(amp: np.ndarray) -> np.ndarray:
        white = np.fft.fft2(rng.standard_normal((TILE, TILE)))
        x = np.real(np.fft.ifft2(white * amp))
        return ((x - x.mean()) / (x.std() + 1e-9)).astype(np.float32)

    fine = np.stack([
        shaped(np.where(fr >= 2, fr ** -1.0, 0.0)),
        shaped(np.where(fr >= 16, fr ** -0.3, 0.0)),
        shaped(np.exp(-(fv / 2.0) ** 2) * np.where(np.abs(fu) >= 2, np.maximum(np.abs(fu), 1.0) ** -0.7, 0.0)),
    ], axis=-1)
    levels = [fine, _wrap_blur(fine, _BLUR_SIGMA)]
    coarse = shaped(np.where((fr >= 1) & (fr <= 24), fr ** -1.2, 0.0))
    return np.ascontiguousarray(np.concatenate(levels, axis=-1)), coarse


def _wrap_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a periodic tile (blur a 3x3 tiling, keep the centre)."""
    big = np.tile(img, (3, 3, 1))
    out = cv2.GaussianBlur(big, (0, 0), sigma)
    return np.ascontiguousarray(out[TILE:2 * TILE, TILE:2 * TILE])


def _material_atlas(tiles: np.ndarray) -> np.ndarray:
    """Stack per-material periodic tiles (N_MATERIALS, TILE, TILE[, C]) into one remap source.

    Tiles are stacked along v (rows); each gets one wrapped row above and below so a
    bilinear lookup never blends two materials. Along u the atlas is exactly TILE wide
    and wraps through ``cv2.BORDER_WRAP``.
    """
    pad = [(0, 0), (1, 1)] + [(0, 0)] * (tiles.ndim - 2)
    padded = np.pad(tiles.astype(np.float32), pad, mode="wrap")
    return np.ascontiguousarray(padded.reshape(N_MATERIALS * _ATLAS_ROWS, *tiles.shape[2:]))


def _atlas_lookup(atlas: np.ndarray, u: np.ndarray, v: np.ndarray, row0: np.ndarray, texel_m: float) -> np.ndarray:
    """Bilinear periodic lookup of the material tiles of ``atlas`` at world-metre coordinates (u, v).

    ``row0`` (same shape, float32) is the atlas row of texel v = 0 of each pixel's material tile.
    """
    scale = np.float32(1.0 / texel_m)
    mx = u * scale
    if mx.size and max(-float(mx.min()), float(mx.max())) > _REMAP_SAFE:   # remap uses 16-bit integer parts
        mx = np.mod(mx, TILE, dtype=np.float32)
    my = v * scale
    wraps = my * np.float32(1.0 / TILE)
    np.floor(wraps, out=wraps)
    wraps *= np.float32(TILE)
    my -= wraps                   # in [0, TILE]
    my += row0
    return cv2.remap(atlas, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def _hash01(a: np.ndarray, b: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer cell (a, b)."""
    h = (a.astype(np.int64) * 73856093) ^ (b.astype(np.int64) * 19349663) ^ (salt * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


@dataclass(frozen=True, eq=False)
class Appearance:
    """Lighting, palette, noise tiles and camera response of one world (all seeded).

    ``sun_dir`` is a unit world vector pointing towards the sun. Radiometry is in
    [0, 1] display units; ``exposure`` scales before quantisation to uint8 and
    ``noise_sigma`` is the Gaussian sensor noise in 8-bit digital numbers.
    """

    sun_dir: np.ndarray = field(default_factory=lambda: np.array([0.4, 0.3, 0.87]) / np.linalg.norm([0.4, 0.3, 0.87]))
    sun: float = 0.75
    ambient: float = 0.45
    palette: np.ndarray = field(default_factory=lambda: _PALETTE.astype(np.float32))
    sky_horizon: np.ndarray = field(default_factory=lambda: np.array([0.80, 0.86, 0.92], np.float32))
    sky_zenith: np.ndarray = field(default_factory=lambda: np.array([0.35, 0.55, 0.85], np.float32))
    exposure: float = 1.0
    noise_sigma: float = 2.0
    shadows: bool = False
    seed: int = 0
    _tiles: tuple = field(default=None, repr=False, compare=False)
    _atlas: tuple = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self):
        s = np.asarray(self.sun_dir, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(s)) or np.linalg.norm(s) < 1e-9:
            raise ValueError(f"sun_dir must be a finite non-zero 3-vector, got {self.sun_dir}")
        object.__setattr__(self, "sun_dir", s / np.linalg.norm(s))
        pal = np.asarray(self.palette, dtype=np.float32)
        if pal.shape != (N_MATERIALS, 2, 3) or not np.all((pal >= 0) & (pal <= 1)):
            raise ValueError(f"palette must be ({N_MATERIALS}, 2, 3) colours in [0, 1], got shape {pal.shape}")
        object.__setattr__(self, "palette", pal)
        for name in ("sun", "ambient", "exposure", "noise_sigma"):
            val = float(getattr(self, name))
            if not (np.isfinite(val) and val >= 0.0):
                raise ValueError(f"appearance {name} must be finite and >= 0, got {val}")
        if self._tiles is None:
            object.__setattr__(self, "_tiles", _noise_tiles(np.random.default_rng([int(self.seed), 7])))
        object.__setattr__(self, "_atlas", self._mixed_atlases())

    def _mixed_atlases(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noise tiles premixed with each material's weights (texturing is linear in the tiles).

        Returns the fine atlas (2 channels: sharp and prefiltered mix of the three fine
        channels), the coarse atlas (base level plus weighted coarse noise), and per
        material (dark colour, light - dark) as an (N_MATERIALS, 6) table.
        """
        fine_levels, coarse = self._tiles
        w = _MIX[:, 1:4] * np.float32(0.5)
        fine = np.stack([np.einsum("yxk,mk->myx", fine_levels[..., 0:3], w),
                         np.einsum("yxk,mk->myx", fine_levels[..., 3:6], w)], axis=-1)
        base = _MIX[:, 0, None, None] + (_MIX[:, 4] * np.float32(0.5))[:, None, None] * coarse
        colors = np.concatenate([self.palette[:, 0, :], self.palette[:, 1, :] - self.palette[:, 0, :]], axis=1)
        return _material_atlas(fine), _material_atlas(base), np.ascontiguousarray(colors, dtype=np.float32)

    @classmethod
    def for_world(cls, spec, **kw) -> "Appearance":
        """Randomised appearance for a :class:`WorldSpec` (indoor worlds get soft light from above)."""
        if spec is None:
            return cls.randomized(0, **kw)
        return cls.randomized(spec.seed, indoor=spec.kind == "indoor", **kw)

    @classmethod
    def randomized(cls, seed: int, shadows: bool = False, noise_sigma: float = 2.0,
                   indoor: bool = False) -> "Appearance":
        """Domain-randomised appearance for a world seed: sun, palette hue/brightness, exposure.

        ``indoor`` replaces the sun by a weak overhead light and raises the ambient level.
        """
        rng = np.random.default_rng([int(seed), 5])
        elev = np.radians(rng.uniform(65.0, 85.0) if indoor else rng.uniform(25.0, 70.0))
        az = rng.uniform(0, 2 * np.pi)
        sun_dir = np.array([np.cos(elev) * np.cos(az), np.cos(elev) * np.sin(az), np.sin(elev)])
        gain = rng.uniform(0.8, 1.15, (N_MATERIALS, 1, 1))
        tint = rng.uniform(0.9, 1.1, (N_MATERIALS, 1, 3))
        palette = np.clip(_PALETTE * gain * tint, 0.0, 1.0).astype(np.float32)
        haze = rng.uniform(0.0, 0.2)
        sun, ambient = rng.uniform(0.5, 0.9), rng.uniform(0.3, 0.5)
        if indoor:
            sun, ambient = 0.5 * sun, ambient + 0.4
        return cls(sun_dir=sun_dir, sun=sun, ambient=ambient, palette=palette,
                   sky_horizon=np.clip(np.array([0.80, 0.86, 0.92]) + haze * 0.3, 0, 1).astype(np.float32),
                   sky_zenith=np.clip(np.array([0.35, 0.55, 0.85]) + haze, 0, 1).astype(np.float32),
                   exposure=rng.uniform(0.85, 1.15), noise_sigma=noise_sigma, shadows=shadows, seed=int(seed))

    def with_(self, **kw) -> "Appearance":
        """Copy with some fields changed (noise tiles are redrawn when ``seed`` changes)."""
        if "seed" in kw:
            kw.setdefault("_tiles", None)
        return replace(self, **kw)

    # -- shading ----------------------------------------------------------------
    def albedo(self, points: np.ndarray, normals: np.ndarray, material: np.ndarray,
               footprint_m: np.ndarray, irradiance: np.ndarray | None = None) -> np.ndarray:
        """Surface colour (H, W, 3) float32 at world ``points`` (H, W, 3) with ``normals``.

        ``footprint_m`` (H, W) is the pixel size on the surface, used to prefilter the
        fine texture (avoids aliasing that would differ between stereo views).
        ``irradiance`` (H, W), if given, scales the colour (returns reflected radiance).
        """
        fine_atlas, coarse_atlas, colors = self._atlas
        an = np.abs(normals)
        flat = an[..., 2] >= np.maximum(an[..., 0], an[..., 1])
        xface = an[..., 0] > an[..., 1]
        # tri-planar: ground-like faces use (x, y), faces towards +-x use (y, z), others (x, z)
        u = np.where(xface & ~flat, points[..., 1], points[..., 0])
        v = np.where(flat, points[..., 1], points[..., 2])
        mat = np.minimum(material, N_MATERIALS - 1)
        off = np.take(_OFFSET, mat)
        row0 = np.take(_ATLAS_ROW0, mat)
        uo, vo = u + off, v + off
        # blend weight towards the prefiltered tile: 0 up to 1.4 texels per pixel, 1 from 5.6
        w_blur = np.maximum(footprint_m, np.float32(1e-6)) * np.float32(1.0 / FINE_TEXEL_M)
        np.log2(w_blur, out=w_blur)
        w_blur *= np.float32(0.5)
        w_blur -= np.float32(0.25)
        np.clip(w_blur, 0.0, 1.0, out=w_blur)
        fine = _atlas_lookup(fine_atlas, uo, vo, row0, FINE_TEXEL_M)
        t = _atlas_lookup(coarse_atlas, uo, vo, row0, COARSE_TEXEL_M)
        sharp, blurred = fine[..., 0], fine[..., 1]
        blurred -= sharp
        blurred *= w_blur
        t += sharp
        t += blurred
        self._patterns(t, u, v, mat, footprint_m)
        np.clip(t, 0.0, 1.0, out=t)
        # colour = (dark + (light - dark) * t) * irradiance, one channel at a time (no broadcasts)
        if irradiance is not None:
            t *= irradiance
        color = np.empty(t.shape + (3,), np.float32)
        for c in range(3):
            np.multiply(np.take(colors[:, 3 + c], mat), t, out=color[..., c])
            dark = np.take(colors[:, c], mat)
            if irradiance is not None:
                dark *= irradiance
            color[..., c] += dark
        return color

    def _patterns(self, t: np.ndarray, u: np.ndarray, v: np.ndarray, mat: np.ndarray,
                  footprint_m: np.ndarray) -> None:
        """Add brick courses and floor tiles in place (only where those materials are).

        Thin mortar/grout lines fade out where a pixel is wider than they are (anti-aliasing).
        """
        brick = mat == Material.BRICK
        if brick.any():
            bu, bv = u[brick] / 0.22, v[brick] / 0.075
            row = np.floor(bv)
            bu = bu + 0.5 * (row % 2)
            col = np.floor(bu)
            mortar = ((bv - row) < 0.13) | ((bu - col) < 0.05)
            fade = np.clip(1.5 - footprint_m[brick] / 0.02, 0.0, 1.0)
            tb = t[brick] + 0.45 * (_hash01(row, col, 1) - 0.5)
            t[brick] = np.where(mortar, tb + (0.95 - tb) * fade, tb)
        tile = mat == Material.FLOOR
        if tile.any():
            tu, tv = u[tile] / 0.5, v[tile] / 0.5
            iu, iv = np.floor(tu), np.floor(tv)
            grout = ((tu - iu) < 0.03) | ((tv - iv) < 0.03)
            fade = np.clip(1.5 - footprint_m[tile] / 0.03, 0.0, 1.0)
            tt = t[tile] + 0.3 * (_hash01(iu, iv, 2) - 0.5)
            t[tile] = np.where(grout, tt + (0.05 - tt) * fade, tt)

    def sky(self, dirs_world: np.ndarray) -> np.ndarray:
        """Sky colour (..., 3) for world ray directions (any length)."""
        d = dirs_world / np.linalg.norm(dirs_world, axis=-1, keepdims=True)
        a = np.clip(d[..., 2], 0.0, 1.0)[..., None] ** 0.6
        return self.sky_horizon + (self.sky_zenith - self.sky_horizon) * a

    def to_uint8(self, radiance: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """Exposure, sensor noise (``noise``: standard normal, same shape, or None) and 8-bit quantisation."""
        img = radiance * np.float32(255.0 * self.exposure)
        if noise is not None and self.noise_sigma > 0:
            img += noise * np.float32(self.noise_sigma)
        img += 0.5
        np.clip(img, 0, 255, out=img)
        return img.astype(np.uint8)
