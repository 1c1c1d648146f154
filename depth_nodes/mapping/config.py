"""TSDF map configuration (one validated dataclass drives the whole mapping layer)."""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

#: Accepted Open3D device strings.
_DEVICE_RE = re.compile(r"^(CPU|CUDA):\d+$")


@dataclass(frozen=True)
class TsdfConfig:
    """Parameters of a :class:`~depth_nodes.mapping.tsdf.TsdfMap`.

    Lengths are metres in the world frame ``map``.

    * ``voxel_size``: voxel edge length.
    * ``block_resolution``: voxels per block edge (8 or 16); a block is
      ``block_resolution**3`` voxels, the unit of allocation and pruning.
    * ``sdf_trunc``: truncation distance; stored distances are clipped to
      ``+-sdf_trunc``. Must lie in ``[voxel_size, 32 * voxel_size]``.
    * ``depth_min`` / ``depth_max``: depth pixels outside this z-range are ignored.
    * ``device``: ``"CPU:0"`` or ``"CUDA:0"`` (falls back to CPU with one log
      line when CUDA is unavailable).
    * ``block_budget``: most blocks kept in memory; when a frame would exceed
      it, the blocks farthest from the camera are dropped first.
    * ``window_radius_m``: sliding window; after every integration blocks whose
      centre is farther than this from the camera are dropped (``None`` = off).
    * ``integrate_color``: keep a per-voxel RGB attribute.
    * ``weight_from_confidence``: weight each observation by the per-pixel
      confidence (0..1) passed to ``integrate`` (else confidence is ignored).
    * ``carve_free_space``: also allocate the blocks between the camera and
      the observed surfaces so that observed free space is *known* free
      (without it only a ``sdf_trunc`` shell around surfaces becomes known).
    * ``carve_max_m``: free space is carved up to this z-depth only (surfaces
      farther away are still integrated); the integration cost grows with
      the cube of this range.
    * ``carve_every_n_frames``: carve free space on every n-th integrated
      frame only (1 = every frame). Surfaces are integrated on every frame
      regardless, so new obstacles appear at once; only the confirmation of
      free space lags by up to ``n - 1`` frames. Carving is about a third of
      the integration time in forward flight, so 2 roughly halves that share.
    * ``surface_weight_threshold``: minimum voxel weight (inclusive) for surface/mesh output.
    """

    voxel_size: float = 0.10
    block_resolution: int = 8
    sdf_trunc: float = 0.30
    depth_min: float = 0.1
    depth_max: float = 20.0
    device: str = "CPU:0"
    block_budget: int = 40_000
    window_radius_m: float | None = None
    integrate_color: bool = False
    weight_from_confidence: bool = False
    carve_free_space: bool = True
    carve_max_m: float = 10.0
    carve_every_n_frames: int = 2
    surface_weight_threshold: float = 1.0

    def __post_init__(self):
        def num(name: str, lo: float, hi: float) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
                raise ValueError(f"TsdfConfig.{name} must be a finite number in [{lo}, {hi}], got {v!r}")
            object.__setattr__(self, name, float(v))
            return float(v)

        vs = num("voxel_size", 0.005, 5.0)
        if self.block_resolution not in (8, 16) or isinstance(self.block_resolution, bool):
            raise ValueError(f"TsdfConfig.block_resolution must be 8 or 16, got {self.block_resolution!r}")
        num("sdf_trunc", vs, 32.0 * vs)
        dmin = num("depth_min", 0.0, 1000.0)
        dmax = num("depth_max", 0.0, 1000.0)
        if dmax <= dmin:
            raise ValueError(f"TsdfConfig.depth_max ({dmax}) must exceed depth_min ({dmin})")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ValueError(f"TsdfConfig.device must look like 'CPU:0' or 'CUDA:0', got {self.device!r}")
        b = self.block_budget
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 10_000_000:
            raise ValueError(f"TsdfConfig.block_budget must be an int in [1, 10000000], got {b!r}")
        if self.window_radius_m is not None:
            num("window_radius_m", vs * self.block_resolution, 1e6)
        for name in ("integrate_color", "weight_from_confidence", "carve_free_space"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TsdfConfig.{name} must be a bool, got {getattr(self, name)!r}")
        num("surface_weight_threshold", 0.0, 1e9)
        num("carve_max_m", 0.0, 1000.0)
        n = self.carve_every_n_frames
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
            raise ValueError(f"TsdfConfig.carve_every_n_frames must be an int in [1, 1000], got {n!r}")

    @property
    def block_size(self) -> float:
        """Block edge length in metres."""
        return self.voxel_size * self.block_resolution

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TsdfConfig":
        """Build from a mapping (e.g. YAML parameters); unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"TsdfConfig: unknown field(s) {unknown}; known: {sorted(names)}")
        return cls(**d)
