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

from depth_nodes.sim.materials import N_MATERIALS
from depth_nodes.sim.shade_kernel import quantize, shade_pixels

TILE = 256                 #: texels per side of the periodic noise tiles
FINE_TEXEL_M = 0.02        #: metres per texel of the fine tile
COARSE_TEXEL_M = 0.3       #: metres per texel of the coarse tile
_BLUR_SIGMA = 2.5         #: texel sigma of the prefiltered copy of the fine tile (a two-level mipmap)

_OFFSET = (np.arange(N_MATERIALS) * 17.3).astype(np.float32)  # decorrelates materials sharing a tile
_ATLAS_ROWS = TILE + 2     # rows per material in a texture atlas: the tile and one wrapped row each side
_ATLAS_ROW0 = (np.arange(N_MATERIALS) * _ATLAS_ROWS + 1).astype(np.float32)  # atlas row of texel v = 0
_FINE_SCALE = np.float32(1.0 / FINE_TEXEL_M)       # fine texels per metre
_COARSE_SCALE = np.float32(1.0 / COARSE_TEXEL_M)   # coarse texels per metre
_MIN_FOOTPRINT_M = np.float32(1e-6)
_SKY_GAMMA = np.float32(0.6)       # sky colour weight towards the zenith: sin(elevation) ** gamma

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
    """Stack per-material periodic tiles (N_MATERIALS, TILE, TILE[, C]) into one texture atlas.

    Tiles are stacked along v (rows); each gets one wrapped row above and below so a
    bilinear lookup never blends two materials. Along u the atlas is exactly TILE wide
    and lookups wrap (see :func:`depth_nodes.sim.shade_kernel.shade_pixels`).
    """
    pad = [(0, 0), (1, 1)] + [(0, 0)] * (tiles.ndim - 2)
    padded = np.pad(tiles.astype(np.float32), pad, mode="wrap")
    return np.ascontiguousarray(padded.reshape(N_MATERIALS * _ATLAS_ROWS, *tiles.shape[2:]))


def texture_lod(footprint_m: np.ndarray) -> np.ndarray:
    """Texture level of detail: log2 of the pixel footprint (metres, floored at 1e-6) in fine texels.

    numpy's vectorised ``log2`` is part of the look (the shading kernel takes its result),
    so it is computed here rather than in compiled code.
    """
    lod = np.maximum(footprint_m, _MIN_FOOTPRINT_M)
    lod *= _FINE_SCALE
    return np.log2(lod, out=lod)


def _flat(name: str, a, shape: tuple[int, ...], dtype, channels: int = 0) -> np.ndarray:
    """``a`` (``shape`` [+ (channels,)]) as a C-contiguous ``dtype`` array (N,) or (N, channels)."""
    want = shape + ((channels,) if channels else ())
    arr = np.asarray(a)
    if arr.shape != want:
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype).reshape((-1, channels) if channels else (-1,))


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
    _sky: np.ndarray = field(init=False, default=None, repr=False, compare=False)

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
        horizon, zenith = (np.asarray(c, np.float32) for c in (self.sky_horizon, self.sky_zenith))
        if horizon.shape != (3,) or zenith.shape != (3,):
            raise ValueError(f"sky_horizon and sky_zenith must be RGB 3-vectors, got shapes "
                             f"{horizon.shape} and {zenith.shape}")
        object.__setattr__(self, "_sky", np.stack([horizon, zenith - horizon]))  # sky = h + (z - h) * a

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
    def radiance(self, t_hit: np.ndarray, points: np.ndarray, normals: np.ndarray, material: np.ndarray,
                 footprint_m: np.ndarray, irradiance: np.ndarray, sky_sin: np.ndarray,
                 out: np.ndarray | None = None) -> np.ndarray:
        """Radiance (N, 3) float32 of N pixels (compiled; C-contiguous float32 inputs, uint8 ``material``).

        Pixels with finite ``t_hit`` (N,) are surfaces at world ``points`` (N, 3) with unit
        ``normals`` (N, 3), ``material`` (N,), ``footprint_m`` (N,) pixel size on the surface
        (metres) and ``irradiance`` (N,); the others are sky, whose colour goes from horizon
        to zenith with ``sky_sin`` (one per sky pixel, in order), the sine of the ray
        elevation clipped to [0, 1]. Written into ``out`` (N, 3) if given.
        """
        n = len(t_hit)
        if out is None:
            out = np.empty((n, 3), np.float32)
        arrays = {"t_hit": t_hit, "points": points, "normals": normals, "material": material,
                  "footprint_m": footprint_m, "irradiance": irradiance, "sky_sin": sky_sin, "out": out}
        for name, a in arrays.items():
            want = (n, 3) if name in ("points", "normals", "out") else (n,)
            if name == "sky_sin":
                want = (len(sky_sin),)          # one per sky pixel, counted by the kernel
            dtype = np.uint8 if name == "material" else np.float32
            if a.shape != want or a.dtype != dtype or not a.flags.c_contiguous:
                raise ValueError(f"{name} must be a C-contiguous {want} {np.dtype(dtype)} array, "
                                 f"got {a.shape} {a.dtype} (contiguous: {a.flags.c_contiguous})")
        fine_atlas, coarse_atlas, colors = self._atlas
        n_sky = shade_pixels(t_hit, points, normals, material, footprint_m, texture_lod(footprint_m), irradiance,
                             np.power(sky_sin, _SKY_GAMMA), fine_atlas, coarse_atlas, colors, _OFFSET, _ATLAS_ROW0,
                             _FINE_SCALE, _COARSE_SCALE, self._sky, out)
        if n_sky != len(sky_sin):
            raise ValueError(f"sky_sin must hold one value per sky pixel (non-finite t_hit): {n_sky}, "
                             f"got {len(sky_sin)}")
        return out

    def albedo(self, points: np.ndarray, normals: np.ndarray, material: np.ndarray,
               footprint_m: np.ndarray, irradiance: np.ndarray | None = None) -> np.ndarray:
        """Surface colour (H, W, 3) float32 at world ``points`` (H, W, 3) with ``normals``.

        ``footprint_m`` (H, W) is the pixel size on the surface, used to prefilter the
        fine texture (avoids aliasing that would differ between stereo views).
        ``irradiance`` (H, W), if given, scales the colour (returns reflected radiance).
        """
        shape = np.shape(footprint_m)
        fp = _flat("footprint_m", footprint_m, shape, np.float32)
        irr = np.ones_like(fp) if irradiance is None else _flat("irradiance", irradiance, shape, np.float32)
        nrm = _flat("normals", normals, shape, np.float32, 3)
        color = self.radiance(np.zeros_like(fp), _flat("points", points, shape, np.float32, 3), nrm,
                              _flat("material", material, shape, np.uint8), fp, irr, np.zeros(0, np.float32))
        return color.reshape(*shape, 3)

    def to_uint8(self, radiance: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """Exposure, sensor noise (``noise``: standard normal, same shape, or None) and 8-bit quantisation."""
        rad = np.ascontiguousarray(radiance, np.float32)
        if noise is not None and np.shape(noise) != rad.shape:
            raise ValueError(f"noise must have the radiance's shape {rad.shape}, got {np.shape(noise)}")
        use_noise = noise is not None and self.noise_sigma > 0
        flat_noise = np.ascontiguousarray(noise, np.float32).reshape(-1) if use_noise else np.zeros(0, np.float32)
        out = np.empty(rad.shape, np.uint8)
        quantize(rad.reshape(-1), np.float32(255.0 * self.exposure), flat_noise, np.float32(self.noise_sigma),
                 out.reshape(-1))
        return out
