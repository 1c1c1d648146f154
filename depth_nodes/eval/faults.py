"""Fault definitions for the fault-injection harness (issue #9), without ROS.

A :class:`Fault` names what goes wrong on which input topics during a window of
simulated time and what the graph is expected to do about it. The payload
corruptions work on an :class:`ImagePayload` (the fields of a
sensor_msgs/Image as numpy and ints), so they are unit-testable and the
relay node (:mod:`depth_nodes.ros.fault_relay`) only copies fields in and out.

Actions:

* ``drop``: the topics' messages are not forwarded;
* ``corrupt``: image payloads are replaced by ``corrupt(payload)``;
* ``restamp``: header stamps are shifted by ``stamp_offset_s`` (a bag loop jumps back,
  a broken clock jumps an hour ahead);
* ``burst``: every message is forwarded ``BURST_FACTOR`` times with distinct stamps
  spread over the preceding period (5x the input rate);
* ``kill_restart`` and ``partition`` are carried out by the harness, not the relay.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from depth_nodes.codec.image import pixel_format

#: Copies per input message during a burst.
BURST_FACTOR = 5
#: The camera-rate streams (colour image, its info, the simulator's ground-truth depth).
CAMERA_TOPICS = ("camera/image_raw", "camera/camera_info", "ground_truth/depth")
#: Image topics whose payload a ``corrupt`` fault replaces.
IMAGE_TOPICS = ("camera/image_raw", "ground_truth/depth")
#: Every stream the relay forwards.
SENSOR_TOPICS = CAMERA_TOPICS + ("radar/points", "odom")
ACTIONS = ("drop", "corrupt", "restamp", "burst", "kill_restart", "partition")
_NS = 1_000_000_000


@dataclass(frozen=True)
class ImagePayload:
    """The fields of a sensor_msgs/Image: ``data`` is a 1-D uint8 array of ``len >= step * height``
    for a well-formed image (a corrupted payload may break that on purpose)."""

    height: int
    width: int
    step: int
    encoding: str
    is_bigendian: int
    data: np.ndarray

    @classmethod
    def from_array(cls, array: np.ndarray, encoding: str) -> ImagePayload:
        """Unpadded payload of an (H, W[, C]) array whose dtype matches ``encoding``."""
        from depth_nodes.codec.image import array_to_image_fields

        f = array_to_image_fields(array, encoding)
        return cls(f["height"], f["width"], f["step"], f["encoding"], f["is_bigendian"], f["data"].copy())


def _fill_float(p: ImagePayload, value: float) -> ImagePayload:
    if p.encoding != "32FC1":
        raise ValueError(f"a {value} depth fill needs a 32FC1 image, got encoding {p.encoding!r}")
    rows = np.full((p.height, p.step // 4), value, dtype=np.float32)
    return replace(p, data=rows.reshape(-1).view(np.uint8).copy())


def nan_depth(p: ImagePayload) -> ImagePayload:
    """Every depth pixel NaN (no return anywhere)."""
    return _fill_float(p, np.nan)


def inf_depth(p: ImagePayload) -> ImagePayload:
    """Every depth pixel +inf."""
    return _fill_float(p, np.inf)


def zero_depth(p: ImagePayload) -> ImagePayload:
    """Every depth pixel 0 (a sensor reporting nothing as zero)."""
    return _fill_float(p, 0.0)


#: An encoding the consumer cannot use for the same bytes: depth labelled as colour, colour as 16-bit mono.
WRONG_ENCODING = {"32FC1": "rgb8", "16UC1": "rgb8"}


def wrong_encoding(p: ImagePayload) -> ImagePayload:
    """Same bytes, an encoding label the consumer rejects (depth -> ``rgb8``, colour -> ``mono16``)."""
    return replace(p, encoding=WRONG_ENCODING.get(p.encoding, "mono16"))


def size_mismatch(p: ImagePayload) -> ImagePayload:
    """A well-formed image of half the width and height (the camera_info still says the full size)."""
    bpp = pixel_format(p.encoding).bytes_per_pixel
    h, w = max(1, p.height // 2), max(1, p.width // 2)
    rows = np.asarray(p.data[: p.step * p.height]).reshape(p.height, p.step)
    return replace(p, height=h, width=w, step=w * bpp, data=np.ascontiguousarray(rows[:h, : w * bpp]).reshape(-1))


def truncate_data(p: ImagePayload) -> ImagePayload:
    """Header unchanged, only the first half of the data bytes."""
    return replace(p, data=p.data[: p.data.size // 2].copy())


#: Factor of :func:`oversize_header`.
OVERSIZE_FACTOR = 10


def oversize_header(p: ImagePayload) -> ImagePayload:
    """Width, height and step claim 10x the real size; the data is the real (small) buffer."""
    k = OVERSIZE_FACTOR
    return replace(p, height=p.height * k, width=p.width * k, step=p.step * k)


def shift_stamp_ns(stamp_ns: int, offset_s: float) -> int:
    """A stamp moved by ``offset_s`` seconds, clamped at 0 (ROS stamps are unsigned)."""
    if not np.isfinite(offset_s):
        raise ValueError(f"offset_s must be finite, got {offset_s}")
    return max(0, int(stamp_ns) + int(round(offset_s * _NS)))


def burst_stamps_ns(stamp_ns: int, period_s: float, factor: int = BURST_FACTOR) -> list[int]:
    """``factor`` increasing stamps ending at ``stamp_ns``, spread over the preceding ``period_s``
    (so a burst never stamps ahead of the source and never goes back before the previous message)."""
    if not (np.isfinite(period_s) and period_s > 0) or factor < 1:
        raise ValueError(f"period_s must be > 0 and factor >= 1, got {period_s}, {factor}")
    step = int(period_s * _NS) // factor
    return [max(0, int(stamp_ns) - (factor - 1 - k) * step) for k in range(factor)]


@dataclass(frozen=True)
class Fault:
    """One fault: ``action`` on ``topics`` during [start_s, start_s + duration_s) of simulated time
    (relative to the harness's reference stamp), and the behaviour the graph must show."""

    name: str
    action: str
    topics: tuple[str, ...]
    description: str
    expected: str
    duration_s: float = 2.0
    corrupt: Callable[[ImagePayload], ImagePayload] | None = None
    stamp_offset_s: float = 0.0
    start_s: float = 0.0
    reason: str = ""    # regular expression the consumers' rejection log line must match

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"fault {self.name}: action must be one of {ACTIONS}, got {self.action!r}")
        if not (np.isfinite(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"fault {self.name}: duration_s must be > 0, got {self.duration_s}")
        if not np.isfinite(self.start_s):
            raise ValueError(f"fault {self.name}: start_s must be finite, got {self.start_s}")
        unknown = sorted(set(self.topics) - set(SENSOR_TOPICS))
        if unknown:
            raise ValueError(f"fault {self.name}: topics {unknown} are not relayed ({list(SENSOR_TOPICS)})")
        if (self.action == "corrupt") != (self.corrupt is not None):
            raise ValueError(f"fault {self.name}: a corrupt function goes with action 'corrupt' only")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def active(self, t_s: float, topic: str) -> bool:
        """True when this fault applies to a message on ``topic`` stamped ``t_s`` (scheduled time)."""
        return topic in self.topics and self.start_s <= t_s < self.end_s

    def at(self, start_s: float) -> Fault:
        """This fault scheduled to start at ``start_s``."""
        return replace(self, start_s=float(start_s))


_DEPTH_STALE = "planner brakes (stale_depth) within 0.2 s of the depth timeout, resumes after"
_REJECT = "rejected with a reason and counted in diagnostics; map unchanged; no node crashes"


def _corrupting(name: str, fn, topics, description: str, reason: str) -> Fault:
    return Fault(name, "corrupt", tuple(topics), description, _REJECT, 2.0, corrupt=fn, reason=reason)


#: Every fault, in table order.
FAULTS: tuple[Fault, ...] = (
    Fault("camera_dropout_1s", "drop", CAMERA_TOPICS, "camera, camera_info and depth silent for 1 s",
          _DEPTH_STALE, 1.0),
    Fault("camera_dropout_5s", "drop", CAMERA_TOPICS, "camera, camera_info and depth silent for 5 s",
          _DEPTH_STALE, 5.0),
    Fault("radar_dropout", "drop", ("radar/points",), "radar silent for 2 s",
          "depth node keeps estimating without radar (frames_without_radar counted); no node crashes", 2.0),
    Fault("odom_dropout", "drop", ("odom",), "odometry silent for 1 s",
          "planner brakes (stale_odom) within 0.2 s of the odometry timeout, resumes after", 1.0),
    _corrupting("depth_nan", nan_depth, ("ground_truth/depth",), "every depth pixel NaN", "no valid depth"),
    _corrupting("depth_inf", inf_depth, ("ground_truth/depth",), "every depth pixel +inf", "no valid depth"),
    _corrupting("depth_zero", zero_depth, ("ground_truth/depth",), "every depth pixel 0", "no valid depth"),
    _corrupting("wrong_encoding", wrong_encoding, IMAGE_TOPICS, "depth labelled rgb8, colour labelled mono16",
                "encoding"),
    _corrupting("size_mismatch", size_mismatch, IMAGE_TOPICS, "images half the size camera_info says",
                "does not match camera_info"),
    _corrupting("truncated_data", truncate_data, IMAGE_TOPICS, "image data cut to half its bytes", "bytes"),
    _corrupting("oversize_header", oversize_header, IMAGE_TOPICS,
                "width/height/step claim 10x the real size (small data)", "bytes"),
    Fault("stamp_backwards", "restamp", SENSOR_TOPICS, "every stamp 3 s in the past (bag loop)",
          "older stamps rejected and counted; planner brakes; map unchanged; resumes after", 2.0,
          stamp_offset_s=-3.0, reason="older than|not newer than"),
    Fault("stamp_future", "restamp", SENSOR_TOPICS, "every stamp 1 h in the future",
          "future stamps rejected and counted; planner brakes; map unchanged; resumes after", 2.0,
          stamp_offset_s=3600.0, reason="ahead of the clock"),
    Fault("burst_5x", "burst", SENSOR_TOPICS, "every message 5x (5x rate, distinct stamps)",
          "bounded memory (RSS growth <= 100 MB), latency back to normal within 1 s after", 3.0),
    Fault("planner_kill_restart", "kill_restart", (), "SIGKILL of the mapper+planner process after save_map; "
          "restarted with load_map_on_start", "process restarts, reloads the saved map and plans again", 1.0),
    Fault("network_partition", "partition", (), "link between the sensor host and the planner host "
          "(ip netns) down for 2 s", "no node crashes; the planner (its /clock is cut off too) brakes first on "
          "reconnection, never planning on the stale inputs, then resumes", 2.0),
)

FAULTS_BY_NAME = {f.name: f for f in FAULTS}


def select_faults(names: str | list[str] | None) -> list[Fault]:
    """Faults by name (comma-separated string or list), in table order; None or '' = all."""
    if names is None or names == "":
        return list(FAULTS)
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in wanted if n not in FAULTS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown faults {unknown}; known: {list(FAULTS_BY_NAME)}")
    return [f for f in FAULTS if f.name in wanted]


def schedule_to_json(faults: list[Fault], offset_s: float = 0.0) -> str:
    """The relay's ``schedule`` parameter: [{name, start_s, duration_s}] (relay-side actions only), start
    times moved by ``offset_s`` (e.g. from simulation-relative to absolute stamp seconds)."""
    return json.dumps([{"name": f.name, "start_s": f.start_s + offset_s, "duration_s": f.duration_s}
                       for f in faults if f.action in ("drop", "corrupt", "restamp", "burst")])


def schedule_from_json(text: str) -> list[Fault]:
    """Inverse of :func:`schedule_to_json`; ValueError naming the bad entry."""
    if not text.strip():
        return []
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"fault schedule is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError(f"fault schedule must be a JSON list, got {type(entries).__name__}")
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or set(e) != {"name", "start_s", "duration_s"}:
            raise ValueError(f"fault schedule entry {i} must have exactly name, start_s, duration_s: {e!r}")
        if e["name"] not in FAULTS_BY_NAME:
            raise ValueError(f"fault schedule entry {i}: unknown fault {e['name']!r}")
        try:
            start, duration = float(e["start_s"]), float(e["duration_s"])
        except (TypeError, ValueError):
            raise ValueError(f"fault schedule entry {i}: start_s and duration_s must be numbers: {e!r}") from None
        out.append(replace(FAULTS_BY_NAME[e["name"]], start_s=start, duration_s=duration))
    return out


def lay_out(faults: list[Fault], first_start_s: float, gap_s: float = 2.5,
            durations: dict[str, float] | None = None, gaps: dict[str, float] | None = None) -> list[Fault]:
    """The faults one after another from ``first_start_s`` (simulated seconds), each followed by
    ``gap_s`` (or ``gaps[name]``) of normal input to recover in; ``durations`` overrides durations by name."""
    out, t = [], float(first_start_s)
    for f in faults:
        gap = (gaps or {}).get(f.name, gap_s)
        if not (np.isfinite(gap) and gap >= 0):
            raise ValueError(f"gap after {f.name} must be >= 0, got {gap}")
        if durations and f.name in durations:
            f = replace(f, duration_s=float(durations[f.name]))
        out.append(f.at(t))
        t = out[-1].end_s + gap
    return out
