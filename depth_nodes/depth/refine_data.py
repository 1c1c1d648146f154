"""Training frames for the stereo hybrid's refiner (``depth-nodes train refine``).

Each item is a frame of a simulator dataset with what the refiner sees at run time: the
hybrid's disparity before refinement and its source (see :mod:`refine_net`), computed once
per frame by the stereo hybrid itself with the given stereo weights and cached on disk.

World seeds the stereo network was trained on (its model card's ``train_world_seeds``) are
left out: there the network's disparity is better than on any new scene, and a refiner trained
on it would learn to trust the network too much.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from depth_nodes.depth.data import DepthDataset, photometric, split_seeds
from depth_nodes.depth.disparity import depth_to_disparity
from depth_nodes.depth.interface import DepthInput

#: Training crop (width, height): several per frame per epoch, cheaper steps than whole frames.
REFINE_CROP = (128, 96)


def stereo_weights_path(stereo_weights) -> Path:
    """The stereo weights file: ``stereo_weights``, or the packaged one for None."""
    from depth_nodes.depth.model_io import default_weights

    return default_weights("stereo") if stereo_weights is None else Path(stereo_weights)


def stereo_training_seeds(stereo_weights) -> list[int]:
    """World seeds the stereo network of ``stereo_weights`` (None: packaged) was trained on."""
    from depth_nodes.depth.model_io import read_card

    return [int(s) for s in read_card(stereo_weights_path(stereo_weights)).get("data", {}).get("train_world_seeds", [])]


class RefineDataset(torch.utils.data.Dataset):
    """Frames of one split (``train``/``val``/``all`` of the world seeds left once the stereo
    network's training seeds are excluded) as tensors: ``image``, ``right`` (3, h, w) float32
    0..255, ``hybrid`` (1, h, w) px, ``source`` (2, h, w), GT ``disparity`` (1, h, w) px and
    ``depth`` (1, h, w) m (0 where there is none) and ``valid`` (1, h, w).

    ``crop`` (w, h): a random window of each frame (whole frames if None or smaller); ``augment``:
    the same brightness, contrast, saturation and gamma change on both images
    (``photometric(global_only=True)``: the hybrid's disparity was computed on the clean pair, and
    blur, noise or a brightness change on one image only would make it no longer fit them).
    ``cache``: directory for the hybrid's outputs (filled on first use, with a progress bar);
    ``runtime``/``device``: how the hybrid runs while filling it."""

    def __init__(self, root, split: str, cache, stereo_weights=None, crop: tuple[int, int] | None = REFINE_CROP,
                 augment: bool = False, seed: int = 0, val_fraction: float = 0.2, runtime: str = "auto",
                 device: str = "cpu"):
        self.base = DepthDataset(root, "all", stereo=True)
        self.excluded_seeds = sorted(set(stereo_training_seeds(stereo_weights)))
        frames = [f for f in self.base.frames if int(f["world"]["seed"]) not in set(self.excluded_seeds)]
        if not frames:
            raise ValueError(f"every world seed of {root} was used to train the stereo network: the refiner "
                             f"needs scenes the network has not seen (make a dataset with other seeds)")
        self.train_seeds, self.val_seeds = split_seeds([f["world"]["seed"] for f in frames], val_fraction)
        keep = {"train": set(self.train_seeds), "val": set(self.val_seeds), "all": None}[split]
        self.base.frames = [f for f in frames if keep is None or int(f["world"]["seed"]) in keep]
        self.camera, self.baseline = self.base.camera, self.base.baseline
        self.crop, self.augment = crop, augment
        self.rng = np.random.default_rng(seed)
        self.stereo_weights, self.runtime, self.device = stereo_weights, runtime, device
        self.cache = Path(cache) / self._fingerprint()
        self._fill_cache()

    def _fingerprint(self) -> str:
        """Cache subdirectory name: a digest of the stereo weights (outputs depend on nothing else)."""
        return "hybrid-" + hashlib.sha1(stereo_weights_path(self.stereo_weights).read_bytes()).hexdigest()[:12]

    def _cache_file(self, i: int) -> Path:
        return self.cache / (Path(self.base.frames[i]["file"]).stem + ".npz")

    def _fill_cache(self) -> None:
        todo = [i for i in range(len(self)) if not self._cache_file(i).is_file()]
        if not todo:
            return
        from depth_nodes.depth.interface import make_estimator

        hybrid = make_estimator("stereo-hybrid", runtime=self.runtime, device=self.device,
                                weights=self.stereo_weights, refine=False)
        self.cache.mkdir(parents=True, exist_ok=True)
        for i in tqdm(todo, desc="hybrid disparity for the refiner", unit="frame"):
            fr = self.base.load(i)
            disp, _, source = hybrid.fused_disparity(DepthInput(fr.rgb, fr.camera, None, fr.right, fr.right_camera))
            tmp = self._cache_file(i).with_suffix(".tmp.npz")
            np.savez(tmp, hybrid=disp.astype(np.float32), source=source[0].astype(np.uint8))
            tmp.replace(self._cache_file(i))  # a run stopped half-way leaves no truncated file behind

    def reseed(self, *entropy: int) -> None:
        """Re-seed the crop/augmentation generator (each DataLoader worker calls this)."""
        self.rng = np.random.default_rng([*entropy])

    @property
    def item_camera(self):
        return self.camera

    def __len__(self) -> int:
        return len(self.base.frames)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        fr = self.base.load(i)
        with np.load(self._cache_file(i), allow_pickle=False) as z:
            hybrid, source = z["hybrid"], z["source"].astype(np.float32)
        gt = depth_to_disparity(fr.depth, fr.camera.fx, fr.right_camera.baseline)
        valid = np.isfinite(gt)
        item = {"image": fr.rgb, "right": fr.right, "hybrid": hybrid, "source": source.transpose(1, 2, 0),
                "disparity": np.where(valid, gt, 0.0), "depth": np.where(valid, fr.depth, 0.0), "valid": valid}
        if self.crop is not None:
            (h, w) = hybrid.shape
            cw, ch = min(self.crop[0], w), min(self.crop[1], h)  # frames smaller than the crop: whole
            y, x = self.rng.integers(0, h - ch + 1), self.rng.integers(0, w - cw + 1)
            item = {k: v[y:y + ch, x:x + cw] for k, v in item.items()}
        if self.augment:
            item["image"], item["right"] = photometric(self.rng, item["image"], item["right"], global_only=True)
        return {k: np.ascontiguousarray(v.transpose(2, 0, 1) if v.ndim == 3 else v[None], dtype=np.float32)
                for k, v in item.items()}
