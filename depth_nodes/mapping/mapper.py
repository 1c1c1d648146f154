"""The mapping core a node wraps: odometry buffer + TSDF map behind one lock.

``Mapper`` pairs a :class:`~depth_nodes.mapping.pose_buffer.PoseBuffer`
(``T_world_body`` by stamp) with a :class:`~depth_nodes.mapping.tsdf.TsdfMap`
and the fixed camera extrinsic ``T_body_cam`` (optical frame in the body
frame), so a depth frame is fused at the camera pose interpolated at its own
stamp: ``T_world_cam = T_world_body(stamp) @ T_body_cam``. A frame whose
stamp lies farther outside the buffered odometry than ``max_extrapolation_s``
is refused with a reason and never reaches the map.

Thread safety: every method may be called from any thread (the mapper and
planner nodes share one instance on a multi-threaded executor). One re-entrant
lock serialises access to the map so that ``load`` / ``clear`` never race an
integration or an ESDF extraction.

Distance windows off the planning path: after :meth:`track_esdf` the thread
that integrates a frame also extracts a distance window around the camera
(a little larger than the planner asks for), and :meth:`esdf_near` hands that
window to the planner when it still covers the requested box. A planning
cycle then never waits for an integration in progress nor pays for the
extraction; its newest depth image covers what the window has not fused yet.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from depth_nodes.camera import PinholeCamera
from depth_nodes.geometry import check_pose
from depth_nodes.mapping.config import TsdfConfig
from depth_nodes.mapping.esdf import EsdfGrid
from depth_nodes.mapping.pose_buffer import PoseBuffer
from depth_nodes.mapping.tsdf import IntegrationResult, TsdfMap

__all__ = ["Mapper", "check_map_path"]


def check_map_path(path) -> Path:
    """A map file path that is safe to write: ``~`` expanded, no control
    characters, extension ``.npz``, parent directory existing.
    ValueError naming the path otherwise."""
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise ValueError(f"map file path must be a non-empty string, got {path!r}")
    s = str(path)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in s):
        raise ValueError(f"map file path {s!r} contains control characters")
    p = Path(s).expanduser()
    if p.suffix != ".npz":
        raise ValueError(f"map file path {s!r} must end in .npz")
    if not p.parent.is_dir():
        raise ValueError(f"map file path {s!r}: directory {str(p.parent)!r} does not exist")
    if p.is_dir():
        raise ValueError(f"map file path {s!r} is a directory")
    return p


class Mapper:
    """Pose-aware, thread-safe TSDF mapping.

    ``config``: the TSDF configuration; ``T_body_cam``: 4x4 pose of the camera
    optical frame in the body frame (default identity); ``max_age_s``,
    ``max_extrapolation_s``, ``max_samples``: odometry buffer limits (see
    :class:`PoseBuffer`).
    """

    def __init__(self, config: TsdfConfig | None = None, T_body_cam=None, *, max_age_s: float = 10.0,
                 max_extrapolation_s: float = 0.05, max_samples: int = 10_000):
        self.T_body_cam = check_pose(np.eye(4) if T_body_cam is None else T_body_cam, "T_body_cam").copy()
        self.poses = PoseBuffer(max_age_s, max_extrapolation_s, max_samples)
        self._map = TsdfMap(config)
        self._lock = threading.RLock()
        self.frames_refused = 0  # frames without a pose (the map counts its own rejections)
        self._esdf_track: tuple[np.ndarray, float] | None = None  # (half extent incl. slack, max distance)
        self._esdf_cached: EsdfGrid | None = None
        self.esdf_cache_hits = 0
        self.esdf_cache_misses = 0
        self.processed_stamp: float | None = None  # newest stamp integrate() has finished with (fused or refused)
        self._listeners: list = []

    @property
    def config(self) -> TsdfConfig:
        return self._map.config

    @property
    def tsdf(self) -> TsdfMap:
        """The current map object (replaced by :meth:`load`)."""
        return self._map

    # ------------------------------------------------------------------ inputs
    def add_odometry(self, stamp: float, T_world_body) -> bool:
        """Buffer one body pose; False when dropped as duplicate or too old.
        ValueError on a non-finite stamp or a non-rigid pose."""
        return self.poses.add(stamp, T_world_body)

    def awaits_odometry(self, stamp: float) -> bool:
        """True when ``stamp`` is newer than the buffered odometry can answer *yet*
        (a later odometry sample may bracket it: hold the frame and retry)."""
        span = self.poses.span
        return span is not None and float(stamp) > span[1] + self.poses.max_extrapolation_s

    def camera_pose(self, stamp: float) -> np.ndarray:
        """``T_world_cam`` at ``stamp`` (ValueError when no pose is available)."""
        return self.poses.lookup(stamp) @ self.T_body_cam

    def add_listener(self, callback) -> None:
        """Call ``callback(stamp)`` after each :meth:`integrate` (fused, refused or failed), outside the
        lock, e.g. to plan on a map that holds that frame."""
        self._listeners.append(callback)

    def integrate(self, stamp: float, depth, camera: PinholeCamera, confidence=None,
                  color=None) -> IntegrationResult:
        """Fuse a depth frame taken at ``stamp`` (seconds).

        ``depth`` (H, W) float metres (NaN/0: no return), ``camera`` its
        intrinsics, ``confidence`` optional (H, W) 0..1, ``color`` optional
        (H, W, 3) uint8 RGB. Returns ``accepted=False`` with the reason (map
        untouched) when no pose brackets the stamp or the frame is invalid.
        Afterwards :attr:`processed_stamp` is ``stamp`` (if newer) and the listeners are called,
        also when the map raised.
        """
        try:
            return self._integrate(stamp, depth, camera, confidence, color)
        finally:
            with self._lock:
                if self.processed_stamp is None or stamp > self.processed_stamp:
                    self.processed_stamp = float(stamp)
            for callback in list(self._listeners):
                callback(float(stamp))

    def _integrate(self, stamp, depth, camera, confidence, color) -> IntegrationResult:
        t0 = time.perf_counter()
        try:
            T_world_cam = self.camera_pose(stamp)
        except ValueError as exc:
            with self._lock:
                self.frames_refused += 1
            return IntegrationResult(False, f"no pose for depth stamp: {exc}", 0, (time.perf_counter() - t0) * 1e3)
        with self._lock:
            result = self._map.integrate(depth, camera, T_world_cam, color=color, confidence=confidence)
            if result.accepted and self._esdf_track is not None:
                half, max_d = self._esdf_track
                self._esdf_cached = self._map.esdf_window(T_world_cam[:3, 3], half, max_d)
            return result

    # ----------------------------------------------------------------- outputs
    def esdf(self, center, half_extent, max_distance_m: float = 1.0) -> EsdfGrid:
        """Euclidean distance window ``center +- half_extent`` (metres, ``map``)."""
        with self._lock:
            return self._map.esdf_window(center, half_extent, max_distance_m)

    def track_esdf(self, half_extent, max_distance_m: float = 1.0, slack_m: float = 0.5) -> None:
        """Extract a window of ``half_extent + slack_m`` (metres) around the camera after every
        integrated frame, for :meth:`esdf_near` (the slack is how far the vehicle may move from
        the frame's position before a planning cycle needs a fresh window)."""
        half = np.broadcast_to(np.asarray(half_extent, dtype=np.float64), (3,)).copy()
        if not (np.all(np.isfinite(half)) and np.all(half > 0)):
            raise ValueError(f"half_extent must be positive metres, got {np.asarray(half_extent).tolist()}")
        if not (np.isfinite(slack_m) and 0.0 <= slack_m <= 10.0):
            raise ValueError(f"slack_m must be in [0, 10] metres, got {slack_m!r}")
        with self._lock:
            self._esdf_track = (half + float(slack_m), float(max_distance_m))
            self._esdf_cached = None

    def esdf_near(self, center, half_extent, max_distance_m: float = 1.0) -> tuple[EsdfGrid, bool]:
        """(window covering ``center +- half_extent``, whether it is the one extracted after the
        newest integration). That window is returned without taking the map lock when it covers
        the box and was extracted with ``max_distance_m``; otherwise a fresh one (as :meth:`esdf`)."""
        cached = self._esdf_cached  # one reference read: integrate() replaces it whole
        c = np.asarray(center, dtype=np.float64).reshape(3)
        h = np.broadcast_to(np.asarray(half_extent, dtype=np.float64), (3,))
        if cached is not None and cached.max_distance_m == float(max_distance_m):
            hi = cached.origin + (np.asarray(cached.shape) - 1) * cached.voxel_size
            if np.all(c - h >= cached.origin) and np.all(c + h <= hi):
                self.esdf_cache_hits += 1
                return cached, True
        self.esdf_cache_misses += 1
        return self.esdf(c, h, max_distance_m), False

    def surface_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(points (N, 3) float32 ``map``, normals (N, 3), colors (N, 3) uint8 or None)."""
        with self._lock:
            return self._map.surface_points()

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(vertices (V, 3) float32 ``map``, triangles (T, 3) int64, colors or None)."""
        with self._lock:
            return self._map.mesh()

    def stats(self) -> dict:
        """Map statistics plus the odometry buffer size and refused frames."""
        with self._lock:
            out = self._map.stats()
            out["frames_refused_no_pose"] = self.frames_refused
            out["esdf_windows_reused"] = self.esdf_cache_hits
            out["esdf_windows_extracted_on_demand"] = self.esdf_cache_misses
        out["odometry_samples"] = len(self.poses)
        return out

    # ------------------------------------------------------------- persistence
    def save(self, path) -> None:
        """Write the map (with its config) to an ``.npz`` file."""
        with self._lock:
            self._map.save(Path(path))

    def load(self, path) -> None:
        """Replace the map by the one saved at ``path`` (kept on this mapper's device).

        The saved map's voxel size and block layout are used; ValueError when
        the file is not a map (the current map is then kept).
        """
        loaded = TsdfMap.load(Path(path), device=self.config.device)
        with self._lock:
            self._map = loaded
            self._esdf_cached = None

    def clear(self) -> None:
        """Forget the map (the odometry buffer is kept)."""
        with self._lock:
            self._map.clear()
            self._esdf_cached = None
