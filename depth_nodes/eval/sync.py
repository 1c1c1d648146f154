"""Frame assembly for replay: group time-stamped sensor payloads around camera images.

Input is a stream of ``(role, stamp_ns, payload)`` in (roughly) time order, with
payloads already decoded to arrays (images, clouds, ``PinholeCamera``) and poses
as 4x4 float64 ``T_map_body`` arrays; this module does no I/O and no message
decoding. Each key image (role ``image``, or ``left`` for stereo) becomes one
:class:`Frame` with:

* ``camera_info`` / ``right_info``: the buffered one nearest in time (ties: the newest);
* ``radar``: the newest cloud stamped in ``[t - radar_tolerance, t]``, else None;
* ``right``: the right image within ``stereo_tolerance`` of ``t``;
* ``pose`` / ``gt_pose``: odometry interpolated at ``t`` (lerp translation, slerp
  rotation) from the samples bracketing it; beyond the samples it is extrapolated
  at constant velocity up to ``max_extrapolation`` and refused (None + reason)
  further out or across gaps longer than ``max_gap``;
* ``gt_depth``: the ground-truth depth within ``gt_tolerance`` of ``t``.

Why a field is None is recorded in ``Frame.missing[role]``. A frame is emitted
once the stream has moved ``hold`` past its stamp (so late radar/odometry can
still be matched) or on :meth:`FrameAssembler.flush`. Buffers are pruned by time
and capped in length, so memory stays bounded on long bags.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from depth_nodes.geometry import check_pose, interpolate_pose

MS = 1_000_000  # nanoseconds per millisecond

#: Roles whose payload is a 4x4 pose, interpolated at the image stamp.
POSE_ROLES = {"odom": "pose", "gt_odom": "gt_pose"}


@dataclass(frozen=True)
class SyncConfig:
    """Matching tolerances in integer nanoseconds.

    ``key_role`` is the image stream frames are keyed on: ``"image"`` (mono) or
    ``"left"`` (stereo); its camera info role is ``camera_info`` / ``left_info``.
    """

    key_role: str = "image"
    radar_tolerance_ns: int = 60 * MS
    max_extrapolation_ns: int = 50 * MS
    max_gap_ns: int = 500 * MS
    gt_tolerance_ns: int = 1 * MS
    stereo_tolerance_ns: int = 1 * MS
    hold_ns: int = 250 * MS
    max_pending: int = 64
    max_buffer: int = 4096

    def __post_init__(self) -> None:
        if self.key_role not in ("image", "left"):
            raise ValueError(f"key_role must be 'image' or 'left', got {self.key_role!r}")
        for name in ("radar_tolerance_ns", "max_extrapolation_ns", "max_gap_ns", "gt_tolerance_ns",
                     "stereo_tolerance_ns", "hold_ns"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"{name} must be an int >= 0 (nanoseconds), got {v!r}")
        for name in ("max_pending", "max_buffer"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
                raise ValueError(f"{name} must be an int >= 2, got {v!r}")

    @property
    def info_role(self) -> str:
        return "camera_info" if self.key_role == "image" else "left_info"

    @property
    def retain_ns(self) -> int:
        """How far before the oldest pending image buffered samples are still useful."""
        return max(self.radar_tolerance_ns, self.max_gap_ns, self.gt_tolerance_ns,
                   self.stereo_tolerance_ns)


@dataclass
class Frame:
    """One key image with everything matched to it. Times in ns, poses ``T_map_body`` 4x4."""

    index: int
    stamp_ns: int
    image: Any
    camera_info: Any = None
    right: Any = None
    right_info: Any = None
    radar: Any = None
    radar_stamp_ns: int | None = None
    pose: np.ndarray | None = None
    gt_depth: Any = None
    gt_pose: np.ndarray | None = None
    missing: dict[str, str] = field(default_factory=dict)


# -- pure matching functions ------------------------------------------------------------------

def _stamps(stamps) -> np.ndarray:
    a = np.asarray(stamps, dtype=np.int64)
    if a.ndim != 1:
        raise ValueError(f"stamps must be 1-D, got shape {a.shape}")
    if a.size > 1 and np.any(np.diff(a) < 0):
        raise ValueError("stamps must be sorted ascending")
    return a


def newest_at_or_before(stamps, t_ns: int, tolerance_ns: int) -> int | None:
    """Index of the newest stamp in ``[t - tolerance, t]`` (sorted stamps), else None."""
    a = _stamps(stamps)
    i = int(np.searchsorted(a, t_ns, side="right")) - 1
    if i >= 0 and t_ns - a[i] <= tolerance_ns:
        return i
    return None


def nearest_within(stamps, t_ns: int, tolerance_ns: int | None = None) -> int | None:
    """Index of the stamp nearest ``t`` (ties: the later one) within ``tolerance`` (None: any)."""
    a = _stamps(stamps)
    if a.size == 0:
        return None
    i = int(np.searchsorted(a, t_ns, side="left"))
    candidates = [j for j in (i - 1, i) if 0 <= j < a.size]
    best = min(candidates, key=lambda j: (abs(int(a[j]) - t_ns), -j))
    if tolerance_ns is not None and abs(int(a[best]) - t_ns) > tolerance_ns:
        return None
    return best


def pose_at(stamps, poses, t_ns: int, *, max_extrapolation_ns: int = 50 * MS,
            max_gap_ns: int = 500 * MS) -> tuple[np.ndarray | None, str | None]:
    """Pose at ``t`` from sorted samples ``(stamps (N,), poses (N, 4, 4))``.

    Returns ``(pose, None)`` or ``(None, reason)``. Inside the samples the two
    bracketing poses are interpolated (translation linear, rotation slerp);
    refused when they are more than ``max_gap`` apart. Outside, the nearest two
    samples are extrapolated at constant velocity up to ``max_extrapolation``
    (a single sample is held within the same limit).
    """
    a = _stamps(stamps)
    P = np.asarray(poses, dtype=np.float64)
    if P.shape != (a.size, 4, 4):
        raise ValueError(f"poses must have shape ({a.size}, 4, 4), got {P.shape}")
    if a.size == 0:
        return None, "no odometry samples"
    i = int(np.searchsorted(a, t_ns, side="left"))
    if i < a.size and a[i] == t_ns:
        return P[i].copy(), None
    if 0 < i < a.size:  # bracketed: a[i-1] < t < a[i]
        gap = int(a[i] - a[i - 1])
        if gap > max_gap_ns:
            return None, f"odometry gap {gap / MS:.1f} ms around the image > max_gap {max_gap_ns / MS:.1f} ms"
        return interpolate_pose(P[i - 1], P[i], (t_ns - int(a[i - 1])) / gap), None
    edge = 0 if i == 0 else a.size - 1
    dist = abs(t_ns - int(a[edge]))
    side = "before the first" if i == 0 else "after the last"
    if dist > max_extrapolation_ns:
        return None, (f"image {dist / MS:.1f} ms {side} odometry sample: extrapolation "
                      f"> {max_extrapolation_ns / MS:.1f} ms refused")
    if a.size == 1:
        return P[0].copy(), None
    j0, j1 = (0, 1) if i == 0 else (a.size - 2, a.size - 1)
    gap = int(a[j1] - a[j0])
    if gap == 0 or gap > max_gap_ns:
        return P[edge].copy(), None
    return interpolate_pose(P[j0], P[j1], (t_ns - int(a[j0])) / gap), None


# -- bounded time-ordered buffer --------------------------------------------------------------

class _TimedBuffer:
    """Samples of one role sorted by stamp; pruned by time, capped in length."""

    def __init__(self, max_len: int) -> None:
        self.stamps: list[int] = []
        self.items: list[Any] = []
        self.max_len = max_len

    def add(self, stamp_ns: int, item: Any) -> None:
        i = bisect.bisect_right(self.stamps, stamp_ns)
        self.stamps.insert(i, stamp_ns)
        self.items.insert(i, item)
        if len(self.stamps) > self.max_len:
            del self.stamps[0], self.items[0]

    def prune_before(self, horizon_ns: int, keep_last: int) -> None:
        """Drop samples older than ``horizon`` but keep the newest ``keep_last`` regardless."""
        n = min(bisect.bisect_left(self.stamps, horizon_ns), max(0, len(self.stamps) - keep_last))
        if n > 0:
            del self.stamps[:n], self.items[:n]

    def __len__(self) -> int:
        return len(self.stamps)


class FrameAssembler:
    """Stateful frame builder: ``push`` payloads, receive completed :class:`Frame` objects.

    Roles other than the key role, its info, ``right``, ``right_info``, ``radar``,
    ``odom``, ``gt_depth`` and ``gt_odom`` are ignored (counted in ``stats``).
    """

    def __init__(self, config: SyncConfig | None = None) -> None:
        self.config = config or SyncConfig()
        c = self.config
        self._roles = {c.info_role, "right", "right_info", "radar", "odom", "gt_depth", "gt_odom"}
        self._buffers = {r: _TimedBuffer(c.max_buffer) for r in self._roles}
        self._pending = _TimedBuffer(c.max_pending + 1)
        self._watermark: int | None = None
        self._last_emitted: int | None = None
        self._index = 0
        self.stats: dict[str, int] = {"frames": 0, "late_images_dropped": 0, "duplicate_images_dropped": 0,
                                      "ignored_messages": 0, "invalid_poses_dropped": 0}

    def push(self, role: str, stamp_ns: int, payload: Any) -> list[Frame]:
        """Add one payload; return frames that became complete (oldest first)."""
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise ValueError(f"stamp_ns must be an int (nanoseconds), got {stamp_ns!r}")
        stamp_ns = int(stamp_ns)
        c = self.config
        if role == c.key_role:
            if self._last_emitted is not None and stamp_ns <= self._last_emitted:
                self.stats["late_images_dropped"] += 1
            elif stamp_ns in self._pending.stamps:
                self.stats["duplicate_images_dropped"] += 1
            else:
                self._pending.add(stamp_ns, payload)
        elif role in self._roles:
            if role in POSE_ROLES:
                try:
                    payload = check_pose(payload, role)
                except ValueError:
                    self.stats["invalid_poses_dropped"] += 1
                    return self._advance(stamp_ns)
            self._buffers[role].add(stamp_ns, payload)
        else:
            self.stats["ignored_messages"] += 1
        return self._advance(stamp_ns)

    def flush(self) -> list[Frame]:
        """Complete every pending frame (end of stream)."""
        return [self._finish() for _ in range(len(self._pending))]

    def _advance(self, stamp_ns: int) -> list[Frame]:
        c = self.config
        self._watermark = stamp_ns if self._watermark is None else max(self._watermark, stamp_ns)
        out = []
        while len(self._pending) and (self._pending.stamps[0] <= self._watermark - c.hold_ns
                                      or len(self._pending) > c.max_pending):
            out.append(self._finish())
        oldest = self._pending.stamps[0] if len(self._pending) else self._watermark - c.hold_ns
        horizon = oldest - c.retain_ns
        for role, buf in self._buffers.items():
            buf.prune_before(horizon, keep_last=2 if role in POSE_ROLES else 1)
        return out

    def _finish(self) -> Frame:
        c = self.config
        t = self._pending.stamps.pop(0)
        image = self._pending.items.pop(0)
        frame = Frame(index=self._index, stamp_ns=t, image=image)
        b = self._buffers
        frame.camera_info = self._match(frame, c.info_role, b[c.info_role], nearest_within(b[c.info_role].stamps, t))
        frame.right_info = self._match(frame, "right_info", b["right_info"], nearest_within(b["right_info"].stamps, t))
        frame.right = self._match(frame, "right", b["right"],
                                  nearest_within(b["right"].stamps, t, c.stereo_tolerance_ns),
                                  f"within {c.stereo_tolerance_ns / MS:g} ms")
        j = newest_at_or_before(b["radar"].stamps, t, c.radar_tolerance_ns)
        frame.radar = self._match(frame, "radar", b["radar"], j,
                                  f"within {c.radar_tolerance_ns / MS:g} ms before the image")
        frame.radar_stamp_ns = b["radar"].stamps[j] if j is not None else None
        frame.gt_depth = self._match(frame, "gt_depth", b["gt_depth"],
                                     nearest_within(b["gt_depth"].stamps, t, c.gt_tolerance_ns),
                                     f"within {c.gt_tolerance_ns / MS:g} ms")
        for role, attr in POSE_ROLES.items():
            buf = b[role]
            poses = np.stack(buf.items) if len(buf) else np.zeros((0, 4, 4))
            pose, reason = pose_at(buf.stamps, poses, t, max_extrapolation_ns=c.max_extrapolation_ns,
                                   max_gap_ns=c.max_gap_ns)
            setattr(frame, attr, pose)
            if reason is not None:
                frame.missing[role] = reason if len(buf) else f"no {role} messages"
        self._last_emitted = t
        self._index += 1
        self.stats["frames"] += 1
        return frame

    @staticmethod
    def _match(frame: Frame, role: str, buf: _TimedBuffer, index: int | None, window: str = "") -> Any:
        if index is not None:
            return buf.items[index]
        frame.missing[role] = f"no {role} messages" if not len(buf) else f"no {role} {window}".rstrip()
        return None


def assemble_frames(stream: Iterable[tuple[str, int, Any]], config: SyncConfig | None = None) -> Iterator[Frame]:
    """Frames from a ``(role, stamp_ns, payload)`` stream (see :class:`FrameAssembler`)."""
    assembler = FrameAssembler(config)
    for role, stamp_ns, payload in stream:
        yield from assembler.push(role, stamp_ns, payload)
    yield from assembler.flush()
