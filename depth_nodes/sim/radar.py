"""4D imaging radar model: range, azimuth, elevation, Doppler and intensity by ray casting.

Radar frame ``radar``: aligned with the body (x forward, y left, z up).
Azimuth is measured from +x towards +y, elevation from the x-y plane towards +z.

Doppler sign convention: the reported ``velocity`` is the range rate of the
target, ``d(range)/dt``. For a static world seen from a sensor moving with
velocity ``v`` it is ``-(v . u)`` with ``u`` the unit ray to the target, so a
surface the sensor approaches has NEGATIVE velocity, a receding one positive.

Returned points are (N, 5) float32 ``[x, y, z, velocity, intensity]`` with
intensity in dB (relative); ``labels`` says which returns are real surface
hits (0), clutter (1) or multipath ghosts (2).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from depth_nodes.depth.radar_frame import radar_to_camera as transform_radar_points  # noqa: F401 (re-export)
from depth_nodes.geometry import check_pose
from depth_nodes.sim.world import World

REAL, CLUTTER, GHOST = 0, 1, 2
_FIRST_BATCH_PER_POINT = 4   # first batch of rays: this many per wanted real detection
FIELDS = ("x", "y", "z", "velocity", "intensity")


@dataclass(frozen=True)
class RadarConfig:
    """Radar parameters; angles in degrees, ranges in metres, velocities in m/s.

    The field of view is sampled by a jittered ray grid with two rays per
    ``az_res_deg`` x ``el_res_deg`` cell; detections get Gaussian range/angle/
    velocity noise and ranges are quantised to ``range_res_m``. ``dropout`` is
    the probability that a surface hit is missed (grazing hits are missed more
    often), ``clutter_fraction`` and ``ghost_fraction`` are the expected shares
    of the returned points that are uniform clutter and range-doubled multipath
    ghosts. At most ``max_points`` returns per frame.
    """

    hfov_deg: float = 100.0
    vfov_deg: float = 30.0
    range_min_m: float = 0.3
    range_max_m: float = 50.0
    range_res_m: float = 0.05
    az_res_deg: float = 1.0
    el_res_deg: float = 2.0
    range_noise_m: float = 0.03
    az_noise_deg: float = 0.3
    el_noise_deg: float = 0.5
    velocity_noise_mps: float = 0.05
    max_points: int = 300
    dropout: float = 0.1
    clutter_fraction: float = 0.03
    ghost_fraction: float = 0.02

    def __post_init__(self):
        for name in ("hfov_deg", "vfov_deg"):
            if not 0.0 < getattr(self, name) < 180.0:
                raise ValueError(f"radar {name} must be in (0, 180), got {getattr(self, name)}")
        if not 0.0 < self.range_min_m < self.range_max_m:
            raise ValueError(f"radar range must satisfy 0 < min < max, got {self.range_min_m}, {self.range_max_m}")
        for name in ("dropout", "clutter_fraction", "ghost_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"radar {name} must be in [0, 1), got {getattr(self, name)}")
        if self.clutter_fraction + self.ghost_fraction >= 0.9:
            raise ValueError("radar clutter_fraction + ghost_fraction must be < 0.9")
        if not 1 <= int(self.max_points) <= 100000:
            raise ValueError(f"radar max_points must be in [1, 100000], got {self.max_points}")
        for name in ("range_res_m", "az_res_deg", "el_res_deg", "range_noise_m", "az_noise_deg",
                     "el_noise_deg", "velocity_noise_mps"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"radar {name} must be finite and >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RadarScan:
    """One radar frame: ``points`` (N, 5) float32 in the radar frame and ``labels`` (N,) uint8."""

    points: np.ndarray
    labels: np.ndarray


def _unit(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    ce = np.cos(el)
    return np.stack([ce * np.cos(az), ce * np.sin(az), np.sin(el)], axis=-1)


class RadarSimulator:
    """Casts a jittered grid of rays over the field of view and forms detections."""

    def __init__(self, config: RadarConfig | None = None):
        self.config = config or RadarConfig()
        c = self.config
        self._n_az = max(8, int(round(c.hfov_deg / max(c.az_res_deg, 0.25) * 2)))
        self._n_el = max(4, int(round(c.vfov_deg / max(c.el_res_deg, 0.25) * 2)))

    def _detect(self, world: World, T: np.ndarray, az: np.ndarray, el: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cast rays at (az, el) (radians, radar frame): (range m, |cos incidence|, detected mask)."""
        c = self.config
        u_world = _unit(az, el) @ np.ascontiguousarray(T[:3, :3].T)
        hits = world.raycast(T[:3, 3][None, :], u_world)
        rng_m = hits.t_hit.astype(np.float64)
        ok = np.isfinite(rng_m) & (rng_m >= c.range_min_m) & (rng_m <= c.range_max_m)
        cos_inc = np.abs(np.einsum("ij,ij->i", hits.normals, u_world))
        ok &= rng.random(len(ok)) >= c.dropout
        ok &= rng.random(len(ok)) < np.clip(0.3 + cos_inc, 0.0, 1.0)   # grazing surfaces reflect less
        return rng_m, cos_inc, ok

    def scan(self, world: World, T_world_radar, v_world, rng: np.random.Generator) -> RadarScan:
        """Simulate one frame at pose ``T_world_radar`` moving with world velocity ``v_world`` (m/s)."""
        c = self.config
        T = check_pose(T_world_radar, "T_world_radar")
        v = np.asarray(v_world, dtype=np.float64).reshape(-1)
        if v.shape != (3,) or not np.all(np.isfinite(v)):
            raise ValueError(f"v_world must be a finite 3-vector, got {v_world}")
        v_radar = T[:3, :3].T @ v
        half_az, half_el = np.radians(c.hfov_deg) / 2, np.radians(c.vfov_deg) / 2
        ga = (np.arange(self._n_az) + rng.random(self._n_az)) / self._n_az
        ge = (np.arange(self._n_el) + rng.random(self._n_el)) / self._n_el
        az, el = np.meshgrid(-half_az + 2 * half_az * ga, -half_el + 2 * half_el * ge)
        # Rays are cast in a random order, a batch at a time, until enough of them have given a
        # detection: a uniform random subset of the detections of a uniformly random prefix of
        # the rays is a uniform random subset of all detections, so the scan is distributed as
        # if every ray were cast (at a fraction of the cost in cluttered scenes).
        order = rng.permutation(az.size)
        az, el = az.ravel()[order], el.ravel()[order]
        n_real_max = int(round(c.max_points * (1.0 - c.clutter_fraction - c.ghost_fraction)))
        rng_m = np.full(az.size, np.inf)
        cos_inc = np.zeros(az.size)
        ok = np.zeros(az.size, dtype=bool)
        first = min(az.size, _FIRST_BATCH_PER_POINT * n_real_max)
        for sl in (slice(0, first), slice(first, az.size)):
            if sl.start == sl.stop or (sl.start and np.count_nonzero(ok) >= n_real_max):
                break
            rng_m[sl], cos_inc[sl], ok[sl] = self._detect(world, T, az[sl], el[sl], rng)
        idx = np.flatnonzero(ok)
        if idx.size > n_real_max:
            idx = np.sort(rng.choice(idx, n_real_max, replace=False))
        r, a, e = rng_m[idx], az[idx], el[idx]
        inten = 10 * np.log10(np.maximum(cos_inc[idx], 0.05) / np.maximum(r, 1.0) ** 2) + 60.0
        vel = -(_unit(a, e) @ v_radar)
        n_real = idx.size
        n_ghost = int(round(c.ghost_fraction / max(1.0 - c.ghost_fraction - c.clutter_fraction, 1e-6) * n_real))
        n_ghost = min(n_ghost, n_real)
        g = rng.choice(n_real, n_ghost, replace=False) if n_ghost else np.zeros(0, int)
        gr = 2.0 * r[g]
        keep_g = gr <= c.range_max_m
        g, gr = g[keep_g], gr[keep_g]
        n_clutter = int(round(c.clutter_fraction / max(1.0 - c.clutter_fraction, 1e-6) * (n_real + g.size)))
        ca = rng.uniform(-half_az, half_az, n_clutter)
        ce = rng.uniform(-half_el, half_el, n_clutter)
        cr = rng.uniform(c.range_min_m, c.range_max_m, n_clutter)
        vmax = float(np.linalg.norm(v)) + 1.0
        all_r = np.concatenate([r, gr, cr])
        all_a = np.concatenate([a, a[g], ca])
        all_e = np.concatenate([e, e[g], ce])
        all_v = np.concatenate([vel, 2.0 * vel[g], rng.uniform(-vmax, vmax, n_clutter)])
        all_i = np.concatenate([inten, inten[g] - rng.uniform(6.0, 12.0, g.size),
                                rng.uniform(inten.min() if n_real else 20.0, (inten.min() if n_real else 20.0) + 10.0,
                                            n_clutter)])
        labels = np.concatenate([np.full(n_real, REAL), np.full(g.size, GHOST), np.full(n_clutter, CLUTTER)])
        n = all_r.size
        all_r = all_r + rng.normal(0.0, c.range_noise_m, n)
        if c.range_res_m > 0:
            all_r = np.round(all_r / c.range_res_m) * c.range_res_m
        all_a = all_a + rng.normal(0.0, np.radians(c.az_noise_deg), n)
        all_e = all_e + rng.normal(0.0, np.radians(c.el_noise_deg), n)
        all_v = all_v + rng.normal(0.0, c.velocity_noise_mps, n)
        xyz = _unit(all_a, all_e) * all_r[:, None]
        pts = np.concatenate([xyz, all_v[:, None], all_i[:, None]], axis=1).astype(np.float32)
        order = rng.permutation(n)
        return RadarScan(points=pts[order], labels=labels[order].astype(np.uint8))
