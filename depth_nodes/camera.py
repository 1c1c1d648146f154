"""Pinhole camera model shared by every layer (ROS CameraInfo semantics).

Points are in the camera's optical frame (z forward, x right, y down).
Depth images are float32 metres with NaN for "no return" (REP-118).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

#: Largest image side we accept anywhere (guards allocations from bad headers).
MAX_IMAGE_SIDE = 8192


def _integer_side(value, name: str) -> int:
    """An image side given as an integral number; ValueError for anything else (None, text, inf, 2.5)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and value == int(value):
        return int(value)
    raise ValueError(f"camera {name} must be an integer number of pixels, got {value!r}")


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of a (rectified) pinhole camera, as in sensor_msgs/CameraInfo.

    ``K`` is the 3x3 intrinsic matrix, ``D`` the distortion coefficients,
    ``P`` the 3x4 projection matrix (for the right camera of a rectified pair
    ``P[0, 3] = -fx * baseline``), ``R`` the rectification rotation.
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))
    P: np.ndarray | None = None
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    frame_id: str = "camera_optical_frame"
    distortion_model: str = "plumb_bob"

    def __post_init__(self):
        w, h = _integer_side(self.width, "width"), _integer_side(self.height, "height")
        if not (0 < w <= MAX_IMAGE_SIDE and 0 < h <= MAX_IMAGE_SIDE):
            raise ValueError(f"camera size {w}x{h} outside 1..{MAX_IMAGE_SIDE}")
        K = np.asarray(self.K, dtype=np.float64).reshape(3, 3) if np.size(self.K) == 9 else None
        if K is None:
            raise ValueError(f"K must have 9 elements, got {np.size(self.K)}")
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"K must be finite with positive focal lengths, got fx={K[0, 0]} fy={K[1, 1]}")
        P = self.P
        if P is None or np.size(P) == 0 or not np.any(P):
            P = np.hstack([K, np.zeros((3, 1))])
        elif np.size(P) != 12:
            raise ValueError(f"P must have 12 elements, got {np.size(P)}")
        P = np.asarray(P, dtype=np.float64).reshape(3, 4)
        if not np.all(np.isfinite(P)):
            raise ValueError("P contains non-finite values")
        R = np.asarray(self.R, dtype=np.float64)
        R = np.eye(3) if R.size != 9 or not np.any(R) else R.reshape(3, 3)
        object.__setattr__(self, "width", w)
        object.__setattr__(self, "height", h)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "D", np.asarray(self.D, dtype=np.float64).ravel())

    # -- construction -------------------------------------------------------
    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float, **kw) -> "PinholeCamera":
        """Square-pixel camera with principal point at the image centre."""
        if not 1.0 < hfov_deg < 179.0:
            raise ValueError(f"hfov_deg must be in (1, 179), got {hfov_deg}")
        f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2.0)
        K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
        return cls(width, height, K, **kw)

    def with_baseline(self, baseline_m: float, frame_id: str | None = None) -> "PinholeCamera":
        """The right camera of a rectified pair with this camera on the left."""
        P = self.P.copy()
        P[0, 3] = -P[0, 0] * baseline_m
        return replace(self, P=P, frame_id=frame_id or self.frame_id)

    def scaled(self, width: int, height: int) -> "PinholeCamera":
        """Same camera, resampled to a new image size."""
        sx, sy = width / self.width, height / self.height
        S = np.diag([sx, sy, 1.0])
        K = S @ self.K
        # pixel centres: u' + 0.5 = sx (u + 0.5)
        K[0, 2] = sx * (self.K[0, 2] + 0.5) - 0.5
        K[1, 2] = sy * (self.K[1, 2] + 0.5) - 0.5
        P = S @ self.P
        P[0, 2], P[1, 2] = K[0, 2], K[1, 2]
        return replace(self, width=width, height=height, K=K, P=P)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> "PinholeCamera":
        """The same camera seeing only the window at (x0, y0) of ``width`` x ``height`` pixels
        (a narrower field of view at the same focal length)."""
        if not (0 <= x0 and 0 <= y0 and 0 < width and 0 < height and x0 + width <= self.width
                and y0 + height <= self.height):
            raise ValueError(f"crop window {width}x{height}+{x0}+{y0} outside the {self.width}x{self.height} image")
        K, P = self.K.copy(), self.P.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        P[0, 2], P[1, 2] = K[0, 2], K[1, 2]
        return replace(self, width=int(width), height=int(height), K=K, P=P)

    # -- properties ---------------------------------------------------------
    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    @property
    def baseline(self) -> float:
        """Stereo baseline in metres from ``P[0, 3] = -fx * B`` (0 for a left/mono camera)."""
        return float(-self.P[0, 3] / self.P[0, 0])

    @property
    def hfov_deg(self) -> float:
        return float(np.degrees(2 * np.arctan2(self.width / 2.0, self.fx)))

    @property
    def vfov_deg(self) -> float:
        return float(np.degrees(2 * np.arctan2(self.height / 2.0, self.fy)))

    # -- projection ---------------------------------------------------------
    def project(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Project (N, 3) optical-frame points to pixels. Returns (uv (N, 2), z (N,))."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        z = p[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * p[:, 0] / z + self.cx
            v = self.fy * p[:, 1] / z + self.cy
        return np.stack([u, v], axis=1), z

    def in_image(self, uv, z, margin: float = 0.0) -> np.ndarray:
        """Mask of projections in front of the camera and inside the image."""
        uv = np.asarray(uv)
        return (
            (np.asarray(z) > 1e-6)
            & (uv[:, 0] >= -0.5 + margin) & (uv[:, 0] < self.width - 0.5 - margin)
            & (uv[:, 1] >= -0.5 + margin) & (uv[:, 1] < self.height - 0.5 - margin)
        )

    def rays(self, dtype=np.float32) -> np.ndarray:
        """(H, W, 3) optical-frame ray directions with z = 1 for every pixel."""
        u = (np.arange(self.width, dtype=np.float64) - self.cx) / self.fx
        v = (np.arange(self.height, dtype=np.float64) - self.cy) / self.fy
        out = np.empty((self.height, self.width, 3), dtype=dtype)
        out[..., 0] = u[None, :]
        out[..., 1] = v[:, None]
        out[..., 2] = 1.0
        return out

    def unproject(self, depth, keep_invalid: bool = False) -> np.ndarray:
        """Depth image (H, W) metres -> optical-frame points.

        Returns (N, 3) float32 points of the valid (finite, > 0) pixels, or
        (H, W, 3) with NaN at invalid pixels when ``keep_invalid``.
        """
        d = np.asarray(depth, dtype=np.float32)
        if d.shape != (self.height, self.width):
            raise ValueError(f"depth shape {d.shape} does not match camera {self.height}x{self.width}")
        pts = self.rays() * d[..., None]
        if keep_invalid:
            bad = ~(np.isfinite(d) & (d > 0))
            pts[bad] = np.nan
            return pts
        valid = np.isfinite(d) & (d > 0)
        return pts[valid]

    def check_depth(self, depth, name: str = "depth") -> np.ndarray:
        """Validate a depth image against this camera; return float32 with NaN for invalid."""
        d = np.asarray(depth)
        if d.shape != (self.height, self.width):
            raise ValueError(f"{name} shape {d.shape} does not match camera {self.height}x{self.width}")
        d = d.astype(np.float32, copy=True)
        d[~np.isfinite(d) | (d <= 0)] = np.nan
        return d
