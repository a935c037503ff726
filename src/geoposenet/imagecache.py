"""Resizing decoded images, and the on-disk cache of pre-resized uint8 images.

The cache of a list of images at one `resize` is two files under the cache root (see
`geoposenet.cache`), keyed by a fingerprint of the images (path, size, mtime) and `resize`:
- `<key>.u8`: the resized images' raw bytes, (3, H, W) uint8 each, one after another;
- `<key>.index.npy`: (N, 4) int64 rows (byte offset, 3, H, W), written last (its presence marks a
  complete entry).
An entry whose index does not describe exactly its data file (wrong dtype or shape, offsets not
contiguous from 0, a channel count other than 3, a shorter side other than `resize`, a data file
of another size, bytes that are not an .npy) is rebuilt, never read.
Readers open the bytes with `np.memmap`, so DataLoader workers share the page cache and nothing is
decoded again; when every image has the same shape, `ImageCache.stacked` is an (N, 3, H, W) view.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from geoposenet.cache import atomic_write, cache_path, fingerprint
from geoposenet.errors import DatasetError
from geoposenet.images import decode_image
from geoposenet.threads import ordered_map

CACHE_NAMESPACE = "images"
# 2: every image decoded by geoposenet.images (version 1 could hold 16-bit images' bytes).
CACHE_VERSION = 2


def check_images_exist(paths: Sequence[Path]) -> None:
    """Raise DatasetError naming the first image file that is missing."""
    for path in paths:
        if not Path(path).is_file():
            raise DatasetError(path, "image file not found")


def load_image(path: Path, resize: int) -> torch.Tensor:
    """Decode an image file with `geoposenet.images.decode_image` and resize it so its shorter
    side is `resize` pixels (antialiased). Returns (3, H, W) uint8; a DatasetError names a file
    that cannot be decoded."""
    return F.resize(decode_image(path), [resize], antialias=True)


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
        """The cache entry of `paths` at shorter side `resize`, built now if absent or damaged."""
        check_images_exist(paths)
        key = fingerprint(paths, resize=resize, version=CACHE_VERSION)
        data_file = cache_path(CACHE_NAMESPACE, key, ".u8")
        index_file = cache_path(CACHE_NAMESPACE, key, ".index.npy")
        index = _read_index(index_file, data_file, len(paths), resize)
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


def _read_index(index_file: Path, data_file: Path, count: int, resize: int) -> np.ndarray | None:
    """The (count, 4) int64 index of a complete entry, or None when either file is missing or
    the index does not describe exactly the images of `data_file` (see the module docstring)."""
    if not (index_file.is_file() and data_file.is_file()):
        return None
    try:
        index = np.load(index_file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if index.dtype != np.int64 or index.shape != (count, 4):
        return None
    offsets, channels, heights, widths = index.T
    sizes = channels * heights * widths
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if (
        (channels != 3).any()
        or (np.minimum(heights, widths) != resize).any()
        or (offsets != starts).any()
        or data_file.stat().st_size != sizes.sum()
    ):
        return None
    return index


def build(paths: Sequence[Path], resize: int, data_file: Path, index_file: Path) -> np.ndarray:
    """Decode and resize every image, streaming the bytes into `data_file`; returns the index.
    Images decode in torch's thread count of threads (one torch thread each), written in
    order. Each image is checked to be (3, H, W) uint8 and fills exactly its slot of
    3 * H * W bytes. Memory use is a few images at a time; both files are written atomically,
    the index last."""
    rows: list[tuple[int, int, int, int]] = []

    def write_data(tmp: Path) -> None:
        offset = 0
        images = ordered_map(lambda path: load_image(path, resize), paths)
        with open(tmp, "wb") as out, closing(images):
            for path, image in zip(paths, images, strict=True):
                if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
                    raise ValueError(
                        f"{path}: expected a (3, H, W) uint8 image for the cache, got "
                        f"{tuple(image.shape)} {image.dtype}"
                    )
                c, h, w = image.shape
                out.write(image.contiguous().numpy().tobytes())
                rows.append((offset, c, h, w))
                offset += c * h * w
                assert out.tell() == offset, f"{path}: image bytes overran their cache slot"

    atomic_write(data_file, write_data)
    index = np.array(rows, dtype=np.int64).reshape(-1, 4)

    def write_index(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            np.save(out, index)

    atomic_write(index_file, write_index)
    return index
