"""Decoding and resizing images, and the on-disk cache of pre-resized uint8 images.

The cache of a list of images at one `resize` is two files under the cache root (see
`geoposenet.cache`), keyed by a fingerprint of the images (path, size, mtime) and `resize`:
- `<key>.u8`: the resized images' raw bytes, (3, H, W) uint8 each, one after another;
- `<key>.index.npy`: (N, 4) int64 rows (byte offset, 3, H, W), written last (its presence marks a
  complete entry).
Readers open the bytes with `np.memmap`, so DataLoader workers share the page cache and nothing is
decoded again; when every image has the same shape, `ImageCache.stacked` is an (N, 3, H, W) view.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as F

from geoposenet.cache import atomic_write, cache_path, fingerprint
from geoposenet.errors import DatasetError, reason

CACHE_NAMESPACE = "images"
CACHE_VERSION = 1


def check_images_exist(paths: Sequence[Path]) -> None:
    """Raise DatasetError naming the first image file that is missing."""
    for path in paths:
        if not Path(path).is_file():
            raise DatasetError(path, "image file not found")


def load_image(path: Path, resize: int) -> torch.Tensor:
    """Decode an image file (JPEG/PNG, any channels) to RGB and resize it so its shorter side is
    `resize` pixels (antialiased). Returns (3, H, W) uint8; a DatasetError names an unreadable
    file."""
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its decoders in favour of torchcodec (not a dependency)
            warnings.simplefilter("ignore", DeprecationWarning)
            image = decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError, OSError) as error:
        raise DatasetError(path, f"cannot decode image ({reason(error)})") from None
    return F.resize(image, [resize], antialias=True)


class ImageCache:
    """Pre-resized (3, H, W) uint8 images of a list of files, memory-mapped from the cache.

    Use `ImageCache.open(paths, resize)`; it builds the entry first when it is missing. Pickling
    keeps only the file names, so worker processes re-open the memory map instead of copying it.
    """

    def __init__(self, data_file: Path, index: np.ndarray) -> None:
        self.data_file = data_file
        self.index = index
        self._data: np.ndarray | None = None

    @classmethod
    def open(cls, paths: Sequence[Path], resize: int) -> ImageCache:
        """The cache entry of `paths` at shorter side `resize`, built now if absent or stale."""
        check_images_exist(paths)
        key = fingerprint(paths, resize=resize, version=CACHE_VERSION)
        data_file = cache_path(CACHE_NAMESPACE, key, ".u8")
        index_file = cache_path(CACHE_NAMESPACE, key, ".index.npy")
        index = _read_index(index_file, data_file, len(paths))
        if index is None:
            index = build(paths, resize, data_file, index_file)
        return cls(data_file, index)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shapes(self) -> np.ndarray:
        """(N, 3) int64 (3, H, W) of every image."""
        return self.index[:, 1:]

    @property
    def data(self) -> np.ndarray:
        """The flat read-only uint8 memory map of all images (opened on first use)."""
        if self._data is None:
            self._data = np.memmap(self.data_file, dtype=np.uint8, mode="r")
        return self._data

    def stacked(self) -> np.ndarray | None:
        """(N, 3, H, W) view of all images when they share one shape, else None."""
        shapes = self.shapes
        if len(shapes) == 0 or not (shapes == shapes[0]).all():
            return None
        return self.data.reshape(len(shapes), *(int(s) for s in shapes[0]))

    def __getitem__(self, i: int) -> np.ndarray:
        """(3, H, W) read-only uint8 view of image i."""
        offset, c, h, w = (int(v) for v in self.index[i])
        return self.data[offset : offset + c * h * w].reshape(c, h, w)

    def __getstate__(self) -> dict[str, object]:
        return {"data_file": self.data_file, "index": self.index, "_data": None}


def _read_index(index_file: Path, data_file: Path, count: int) -> np.ndarray | None:
    """The index of a complete entry, or None when missing or inconsistent with its data file."""
    if not (index_file.is_file() and data_file.is_file()):
        return None
    try:
        index = np.load(index_file)
    except (OSError, ValueError):
        return None
    if index.shape != (count, 4):
        return None
    total = int((index[:, 1] * index[:, 2] * index[:, 3]).sum())
    if data_file.stat().st_size != total:
        return None
    return index


def build(paths: Sequence[Path], resize: int, data_file: Path, index_file: Path) -> np.ndarray:
    """Decode and resize every image, streaming the bytes into `data_file`; returns the index.
    Memory use is one image at a time; both files are written atomically, the index last."""
    rows: list[tuple[int, int, int, int]] = []

    def write_data(tmp: Path) -> None:
        offset = 0
        with open(tmp, "wb") as out:
            for path in paths:
                image = load_image(path, resize).contiguous()
                image.numpy().tofile(out)
                c, h, w = image.shape
                rows.append((offset, c, h, w))
                offset += c * h * w

    atomic_write(data_file, write_data)
    index = np.array(rows, dtype=np.int64).reshape(-1, 4)

    def write_index(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            np.save(out, index)

    atomic_write(index_file, write_index)
    return index
