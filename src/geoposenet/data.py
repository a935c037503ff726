"""PoseDataset over a Scene, and batch colour augmentation.

An item is a dict (`PoseDataset.batch` gives many at once, stacked: bit for bit the default
collation of the items, in one gather):
- "image": (3, crop_h, crop_w) uint8 RGB; the model normalises on its device (IMAGENET_MEAN/STD);
- "position": (3,) float32 camera centre in the centred frame (centre - offset), metres;
- "quaternion": (4,) float32 world -> camera rotation, wxyz, canonical (w >= 0);
- "points": (P, 3) float32 world points seen in the image, centred frame (points - offset),
  zero-padded; "points_mask": (P,) bool, True for real points;
- "index": int, the frame's position in the dataset.
Randomness (training crops, point subsets) comes from a generator seeded by (seed, epoch, index),
so an epoch reproduces exactly whatever the worker count, order or resume point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, get_args

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from geoposenet.errors import DatasetError, InputError
from geoposenet.imagecache import ImageCache, check_images_exist, load_image
from geoposenet.scene import Scene, Split
from geoposenet.settings import parse_crop

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Item = dict[str, Any]


def crop_size(crop: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a crop given as one side or as (h, w) (geoposenet.settings.parse_crop);
    InputError unless both are positive whole pixels."""
    try:
        height, width = parse_crop(crop)
    except ValueError as error:
        raise InputError(f"crop: {error}") from None
    if height <= 0 or width <= 0:
        raise InputError(f"crop must be a positive size or (height, width), got {crop!r}")
    return height, width


def crop_origin(
    height: int, width: int, crop: tuple[int, int], rng: np.random.Generator | None
) -> tuple[int, int]:
    """(top, left) of a crop of size `crop` in a height x width image: uniform at random when
    `rng` is given, else the centre (floor of half the margin). ValueError if it does not fit."""
    ch, cw = crop
    if ch > height or cw > width:
        raise ValueError(f"crop {ch}x{cw} does not fit in a {height}x{width} image")
    if rng is None:
        return (height - ch) // 2, (width - cw) // 2
    top, left = rng.integers(0, (height - ch + 1, width - cw + 1))
    return int(top), int(left)


class PoseDataset(Dataset[Item]):
    """The frames of one split of a Scene as training items (see the module docstring).

    offset: (3,) origin of the centred frame (usually `scene.train_centre()`), metres.
    resize: shorter image side after resizing (pixels); crop: crop side or (h, w), which must fit
    in every resized image. train: random crops (default when split == "train") else centre crops.
    points_per_frame: P, the number of point slots (0 = no points). cache: read pre-resized
    images from the on-disk cache (built on first use) instead of decoding files every time.
    """

    def __init__(
        self,
        scene: Scene,
        split: Split,
        offset: np.ndarray,
        resize: int = 256,
        crop: int | tuple[int, int] = 224,
        train: bool | None = None,
        points_per_frame: int = 128,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        if split not in get_args(Split):
            raise InputError(f"split must be one of {get_args(Split)}, got {split!r}")
        if resize <= 0:
            raise InputError(f"resize must be a positive number of pixels, got {resize}")
        if points_per_frame < 0:
            raise InputError(f"points_per_frame must be >= 0, got {points_per_frame}")
        frames = scene.split(split)
        if not frames:
            raise DatasetError(scene.root, f"the scene has no {split} frames")
        offset = np.asarray(offset, dtype=np.float64).reshape(3)
        self.split = split
        self.resize = resize
        self.crop = crop_size(crop)
        self.train = split == "train" if train is None else train
        self.points_per_frame = points_per_frame
        self.seed = seed
        self.paths = [frame.image for frame in frames]
        self.positions = np.stack([f.centre - offset for f in frames]).astype(np.float32)
        self.quaternions = np.stack([f.quaternion for f in frames]).astype(np.float32)
        self.points = (scene.points - offset).astype(np.float32)
        self.point_ids = [np.asarray(f.point_ids, dtype=np.int64) for f in frames]
        # shared memory, so persistent DataLoader workers see set_epoch() of the main process
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        check_images_exist(self.paths)
        self.images = ImageCache.open(self.paths, resize) if cache else None
        if self.images is not None:
            for path, (_, h, w) in zip(self.paths, self.images.shapes, strict=True):
                self._check_fits(path, int(h), int(w))

    @property
    def epoch(self) -> int:
        """The epoch that seeds the per-item randomness."""
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the randomness of `epoch` (call before iterating a loader over it)."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def _check_fits(self, path: object, height: int, width: int) -> None:
        ch, cw = self.crop
        if ch > height or cw > width:
            raise InputError(
                f"{path}: crop {ch}x{cw} (height x width) does not fit in the image resized to "
                f"{height}x{width} (shorter side {self.resize}); use a smaller crop or a larger "
                "resize"
            )

    def image(self, index: int) -> np.ndarray:
        """(3, H, W) uint8 resized image of frame `index` (read-only view when cached)."""
        if self.images is not None:
            return self.images[index]
        return load_image(self.paths[index], self.resize).numpy()

    def __getitem__(self, index: int) -> Item:
        index = int(index)
        if not 0 <= index < len(self.paths):
            raise IndexError(f"index {index} out of range for {len(self.paths)} frames")
        batch = self.batch([index])
        return {key: value[0] for key, value in batch.items() if key != "index"} | {"index": index}

    def batch(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The items `indices` as one batch, bit for bit the default collation of
        [self[i] for i in indices]: "image" (B, 3, crop_h, crop_w) uint8, "position" (B, 3),
        "quaternion" (B, 4), "points" (B, P, 3), "points_mask" (B, P), "index" (B,) int64.

        Each item's random draws (crop origin, then point subset) still come from its own
        generator seeded by (seed, epoch, index), made only for items that draw; the crops,
        the gathers from the image cache and the points, and the stacking are whole-batch
        numpy operations."""
        index = np.array(indices, dtype=np.int64).reshape(-1)  # a copy: "index" owns it
        if ((index < 0) | (index >= len(self.paths))).any():
            raise IndexError(f"indices {index.tolist()} out of range for {len(self.paths)} frames")
        slots = self.points_per_frame
        draws = [self.train or len(self.point_ids[i]) > slots for i in index]
        epoch = self.epoch
        rngs = [
            np.random.default_rng((self.seed, epoch, int(i))) if draw else None
            for i, draw in zip(index, draws, strict=True)
        ]
        images = self._crops(index, rngs)
        points, mask = self._points(index, rngs)
        return {
            "image": torch.from_numpy(images),
            "position": torch.from_numpy(self.positions[index]),
            "quaternion": torch.from_numpy(self.quaternions[index]),
            "points": torch.from_numpy(points),
            "points_mask": torch.from_numpy(mask),
            "index": torch.from_numpy(index),
        }

    def _crops(self, index: np.ndarray, rngs: list[np.random.Generator | None]) -> np.ndarray:
        """(B, 3, crop_h, crop_w) uint8 crops of the images `index` (random origins from
        `rngs` when training, else centred): one gather from the stacked image cache when all
        images share a shape, else one copy per image."""
        ch, cw = self.crop
        stacked = self.images.stacked() if self.images is not None else None
        if stacked is not None:
            sources: list[np.ndarray] = []
            shapes = np.broadcast_to(np.array(stacked.shape[2:]), (len(index), 2))
        else:
            sources = [self.image(int(i)) for i in index]
            for i, image in zip(index, sources, strict=True):
                self._check_fits(self.paths[i], image.shape[1], image.shape[2])
            shapes = np.array([image.shape[1:] for image in sources], dtype=np.int64)
            shapes = shapes.reshape(len(index), 2)
        origins = (shapes - (ch, cw)) // 2  # centre crops
        if self.train:
            for k, ((height, width), rng) in enumerate(zip(shapes, rngs, strict=True)):
                origins[k] = crop_origin(int(height), int(width), self.crop, rng)
        top, left = origins[:, 0], origins[:, 1]
        if stacked is not None:  # (N, 3, H - ch + 1, W - cw + 1, ch, cw) windows, no copy
            windows = np.lib.stride_tricks.sliding_window_view(stacked, (ch, cw), axis=(2, 3))
            return np.ascontiguousarray(windows[index, :, top, left])
        out = np.empty((len(index), 3, ch, cw), dtype=np.uint8)
        for k, image in enumerate(sources):
            out[k] = image[:, top[k] : top[k] + ch, left[k] : left[k] + cw]
        return out

    def _points(
        self, index: np.ndarray, rngs: list[np.random.Generator | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, P, 3) float32 centred points and (B, P) bool mask: all of a frame's points when
        it sees at most P, else P of them drawn without replacement by its generator."""
        slots = self.points_per_frame
        chosen = []
        for i, rng in zip(index, rngs, strict=True):
            ids = self.point_ids[i]
            if len(ids) > slots:
                assert rng is not None
                ids = ids[rng.choice(len(ids), slots, replace=False)]
            chosen.append(ids)
        counts = np.array([len(ids) for ids in chosen], dtype=np.int64)
        rows = np.repeat(np.arange(len(index)), counts)
        columns = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        points = np.zeros((len(index), slots, 3), dtype=np.float32)
        mask = np.zeros((len(index), slots), dtype=bool)
        if len(rows):
            points[rows, columns] = self.points[np.concatenate(chosen)]
            mask[rows, columns] = True
        return points, mask


# RGB -> YIQ (NTSC). A hue shift by angle a rotates the chroma plane (I, Q) and keeps luma Y; in RGB
# it is the matrix _HUE_KEEP + cos(a) _HUE_COS + sin(a) _HUE_SIN.
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
_HUE_KEEP = _YIQ_TO_RGB @ np.diag([1.0, 0.0, 0.0]) @ _RGB_TO_YIQ
_HUE_COS = _YIQ_TO_RGB @ np.diag([0.0, 1.0, 1.0]) @ _RGB_TO_YIQ
_HUE_SIN = _YIQ_TO_RGB @ np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_HUE_SIN = _HUE_SIN @ _RGB_TO_YIQ
_LUMA = _RGB_TO_YIQ[0]


def augment_batch(
    images: Tensor,
    generator: torch.Generator,
    brightness: float = 0.25,
    contrast: float = 0.25,
    saturation: float = 0.25,
    hue: float = 0.02,
) -> Tensor:
    """Random colour jitter of a batch: one affine colour transform per image, on its device.

    images: (B, 3, H, W) uint8, or float in [0, 1]. Factors are drawn per image from `generator`
    (on the generator's device): brightness, contrast and saturation scale by U[1 - s, 1 + s];
    hue rotates the chroma by U[-hue, hue] of a turn. Returns float32 (B, 3, H, W) in [0, 1];
    strengths of 0 return the input scaled to [0, 1] (up to float rounding).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
    for name, value, limit in (
        ("brightness", brightness, 1.0),
        ("contrast", contrast, 1.0),
        ("saturation", saturation, 1.0),
        ("hue", hue, 0.5),
    ):
        if not 0.0 <= value <= limit:
            raise ValueError(f"{name} must be in [0, {limit}], got {value}")
    device = images.device
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    batch = x.shape[0]
    u = torch.rand(batch, 4, generator=generator, device=generator.device).to(device) * 2 - 1
    bright = 1.0 + brightness * u[:, 0]
    contr = 1.0 + contrast * u[:, 1]
    sat = 1.0 + saturation * u[:, 2]
    angle = (2.0 * math.pi * hue) * u[:, 3]

    def const(array: np.ndarray) -> Tensor:
        return torch.as_tensor(array, dtype=torch.float32, device=device)

    luma = const(_LUMA)
    gray = luma.expand(3, 3)  # every row holds the luma weights: gray @ rgb = (Y, Y, Y)
    eye = torch.eye(3, device=device)
    sat_matrix = sat[:, None, None] * eye + (1.0 - sat)[:, None, None] * gray
    hue_matrix = (
        const(_HUE_KEEP)
        + torch.cos(angle)[:, None, None] * const(_HUE_COS)
        + torch.sin(angle)[:, None, None] * const(_HUE_SIN)
    )
    colour = bright[:, None, None] * (hue_matrix @ sat_matrix)  # (B, 3, 3)
    # contrast blends with the mean luma of the colour-transformed image: y = c M x + (1 - c) m
    mean_luma = (colour @ x.mean(dim=(2, 3))[:, :, None])[:, :, 0] @ luma  # (B,)
    out = torch.einsum("bij,bjhw->bihw", contr[:, None, None] * colour, x)
    return out.add_(((1.0 - contr) * mean_luma)[:, None, None, None]).clamp_(0.0, 1.0)
