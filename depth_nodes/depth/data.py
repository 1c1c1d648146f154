"""Training/evaluation data from `depth-nodes sim dataset` directories.

Layout: ``DIR/manifest.json`` = ``{"version": 1, "frames": [{"file":
"frames/000_0000.npz", "world": {"kind", "seed", ...}, "frame": 0}, ...],
"camera": {"width", "height", "K": [9], "baseline"}}``; each ``.npz`` (no
pickle) holds ``rgb``/``right`` (H, W, 3) uint8, ``depth`` (H, W) float32
metres (NaN invalid, left optical z), ``radar`` (N, 5) float32 in the LEFT
camera optical frame, ``K`` (3, 3), ``baseline`` and ``T_world_cam`` (4, 4).

Splits hold out whole worlds: the world seeds are sorted and the last
``val_fraction`` of them (at least one when there are two or more) form the
validation split, so validation scenes are never seen in training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from depth_nodes.camera import PinholeCamera
from depth_nodes.depth.disparity import depth_to_disparity
from depth_nodes.depth.radar_encoding import encode_radar

SPLITS = ("train", "val", "all")
_FRAME_KEYS = ("rgb", "right", "depth", "radar")


@dataclass(frozen=True)
class Frame:
    """One dataset frame as arrays (see module docstring for units/frames)."""

    rgb: np.ndarray
    right: np.ndarray
    depth: np.ndarray
    radar: np.ndarray
    camera: PinholeCamera
    right_camera: PinholeCamera
    world_seed: int


def read_manifest(root) -> dict:
    """Parse and validate ``root/manifest.json``."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"dataset manifest {path} not found (make one with `depth-nodes sim dataset`)")
    man = json.loads(path.read_text())
    if man.get("version") != 1:
        raise ValueError(f"{path}: unsupported manifest version {man.get('version')!r} (expected 1)")
    frames = man.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: 'frames' must be a non-empty list")
    for i, f in enumerate(frames):
        if not isinstance(f, dict) or "file" not in f or "seed" not in f.get("world", {}):
            raise ValueError(f"{path}: frames[{i}] needs 'file' and 'world.seed', got {f!r:.200}")
    cam = man.get("camera", {})
    for key in ("width", "height", "K", "baseline"):
        if key not in cam:
            raise ValueError(f"{path}: camera lacks {key!r}")
    return man


def split_seeds(seeds, val_fraction: float) -> tuple[list[int], list[int]]:
    """(train seeds, validation seeds): the last ``val_fraction`` of the sorted unique seeds."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    uniq = sorted(set(int(s) for s in seeds))
    n_val = 0 if len(uniq) < 2 or val_fraction == 0 else max(1, int(round(val_fraction * len(uniq))))
    n_val = min(n_val, len(uniq) - 1) if len(uniq) >= 2 else 0
    return uniq[: len(uniq) - n_val], uniq[len(uniq) - n_val:]


def manifest_camera(man: dict) -> PinholeCamera:
    """Left camera of a manifest, with the baseline in its projection (right camera = with_baseline)."""
    c = man["camera"]
    return PinholeCamera(int(c["width"]), int(c["height"]), np.asarray(c["K"], dtype=np.float64))


class DepthDataset(torch.utils.data.Dataset):
    """Frames of one split as network tensors at ``size`` = (w, h) (default: native).

    Items: ``image``/``right`` (3, h, w) float32 0..255, ``radar`` (2, h, w)
    [inverse depth, mask], ``depth`` (1, h, w) metres (0 = invalid), ``valid``
    (1, h, w), ``disparity`` (1, h, w) px at size ``w``. ``augment`` enables
    photometric jitter, blur, noise, radar dropout/noise and, unless
    ``stereo``, horizontal flips (a flipped stereo pair would need the right
    camera's ground truth, so stereo skips flips).
    """

    def __init__(self, root, split: str = "all", size: tuple[int, int] | None = None, augment: bool = False,
                 stereo: bool = False, seed: int = 0, val_fraction: float = 0.2, radar_dilate: int = 1):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.camera = manifest_camera(self.manifest)
        self.baseline = float(self.manifest["camera"]["baseline"])
        all_frames = self.manifest["frames"]
        self.train_seeds, self.val_seeds = split_seeds([f["world"]["seed"] for f in all_frames], val_fraction)
        keep = {"train": set(self.train_seeds), "val": set(self.val_seeds), "all": None}[split]
        self.frames = [f for f in all_frames if keep is None or int(f["world"]["seed"]) in keep]
        self.size = tuple(size) if size is not None else self.camera.size
        self.augment, self.stereo, self.radar_dilate = augment, stereo, radar_dilate
        self.rng = np.random.default_rng(seed)

    @property
    def item_camera(self) -> PinholeCamera:
        """The left camera at the item resolution ``size`` (what the network sees)."""
        return self.camera if self.size == self.camera.size else self.camera.scaled(*self.size)

    def reseed(self, *entropy: int) -> None:
        """Re-seed the augmentation generator (each DataLoader worker calls this with its id)."""
        self.rng = np.random.default_rng([*entropy])

    def __len__(self) -> int:
        return len(self.frames)

    def load(self, i: int) -> Frame:
        """Frame ``i`` at native resolution, validated."""
        entry = self.frames[i]
        path = self.root / entry["file"]
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _FRAME_KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            arr = {k: z[k] for k in _FRAME_KEYS}
            K = z["K"] if "K" in z.files else self.camera.K
            baseline = float(z["baseline"]) if "baseline" in z.files else self.baseline
        h, w = self.camera.height, self.camera.width
        for k in ("rgb", "right"):
            if arr[k].shape != (h, w, 3) or arr[k].dtype != np.uint8:
                raise ValueError(f"{path}: {k} must be uint8 ({h}, {w}, 3), got {arr[k].dtype} {arr[k].shape}")
        if arr["depth"].shape != (h, w):
            raise ValueError(f"{path}: depth shape {arr['depth'].shape} != ({h}, {w})")
        radar = np.asarray(arr["radar"], dtype=np.float32).reshape(-1, 5)
        cam = PinholeCamera(w, h, K)
        return Frame(arr["rgb"], arr["right"], cam.check_depth(arr["depth"]), radar, cam,
                     cam.with_baseline(baseline), int(entry["world"]["seed"]))

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        fr = self.load(i)
        cam = fr.camera if self.size == fr.camera.size else fr.camera.scaled(*self.size)
        rgb, right, depth = fr.rgb, fr.right, fr.depth
        if self.size != fr.camera.size:
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
            right = cv2.resize(right, self.size, interpolation=cv2.INTER_AREA)
            depth = cv2.resize(depth, self.size, interpolation=cv2.INTER_NEAREST)
        radar = fr.radar
        if self.augment:
            rgb, right = photometric(self.rng, rgb, right)
            radar = radar_noise(self.rng, radar)
        enc = encode_radar(radar, cam, self.radar_dilate)
        if self.augment and not self.stereo and self.rng.random() < 0.5:
            rgb, depth, enc = rgb[:, ::-1], depth[:, ::-1], enc[:, :, ::-1]
        valid = np.isfinite(depth)
        disp = depth_to_disparity(depth, cam.fx, fr.right_camera.baseline)
        return {
            "image": np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32),
            "right": np.ascontiguousarray(right.transpose(2, 0, 1), dtype=np.float32),
            "radar": np.ascontiguousarray(enc, dtype=np.float32),
            "depth": np.where(valid, depth, 0.0).astype(np.float32)[None],
            "valid": valid.astype(np.float32)[None],
            "disparity": np.where(valid, disp, 0.0).astype(np.float32)[None],
        }


def photometric(rng: np.random.Generator, left: np.ndarray, right: np.ndarray,
                global_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Same random brightness/contrast/saturation/gamma on both images (small independent
    brightness change per image), optional Gaussian blur, Gaussian pixel noise.

    ``global_only``: only the changes common to both images, each pixel mapped by the same
    curve (no independent brightness, blur or noise): for inputs computed from the clean
    pair, such as the stereo hybrid's disparity the refiner trains on, which the other
    changes would no longer match."""
    brightness, contrast, saturation = rng.uniform(0.75, 1.25, 3)
    gamma = rng.uniform(0.8, 1.25)
    blur = rng.uniform(0.3, 1.2) if rng.random() < 0.25 and not global_only else 0.0
    noise = rng.uniform(0.0, 6.0) if rng.random() < 0.5 and not global_only else 0.0
    out = []
    for img in (left, right):
        x = img.astype(np.float32) / 255.0
        x = x * brightness * (1.0 if global_only else rng.uniform(0.97, 1.03))
        mean = x.mean()
        x = (x - mean) * contrast + mean
        grey = x.mean(axis=2, keepdims=True)
        x = np.clip((x - grey) * saturation + grey, 0.0, 1.0) ** gamma
        x *= 255.0
        if blur:
            x = cv2.GaussianBlur(x, (0, 0), blur)
        if noise:
            x = x + rng.normal(0.0, noise, x.shape).astype(np.float32)
        out.append(np.clip(x, 0, 255).astype(np.uint8))
    return out[0], out[1]


def radar_noise(rng: np.random.Generator, radar: np.ndarray, frame_dropout: float = 0.25,
                point_dropout: float = 0.3, range_sigma: float = 0.02, lateral_sigma: float = 0.01) -> np.ndarray:
    """Radar augmentation: drop the whole frame (so the net also works without radar),
    drop points, scale ranges by (1 + N(0, range_sigma)), shift x/y by N(0, lateral_sigma * z)."""
    if radar.shape[0] == 0 or rng.random() < frame_dropout:
        return radar[:0]
    r = radar[rng.random(radar.shape[0]) >= point_dropout].copy()
    r[:, :3] *= (1.0 + rng.normal(0.0, range_sigma, (r.shape[0], 1))).astype(np.float32)
    r[:, :2] += (rng.normal(0.0, lateral_sigma, (r.shape[0], 2)) * r[:, 2:3]).astype(np.float32)
    return r
