"""The one way an image file becomes pixels: `decode_image` -> (3, H, W) uint8 RGB.

Training (its image cache), `PoseNet.predict` and `geoposenet check` all decode through it, so
`check` accepts exactly the files training can read and gives the same reason for the others.
JPEGs are decoded by torchvision, PNGs by PIL (see `_decode_png` for why).
7-Scenes depth maps are 16-bit data, not images, and have their own reader.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import io as tvio

from geoposenet.errors import DatasetError, reason

# Leading bytes of the formats decoded, and of some others, named in the error that rejects them.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
)


def decode_image(path: Path) -> torch.Tensor:
    """Decode a PNG or JPEG file to (3, H, W) uint8 RGB.

    - 8-bit RGB: as stored. Greyscale (any bit depth) is repeated into the three channels;
      palette images are looked up in their palette; CMYK JPEGs are converted to RGB.
    - Alpha (grey+alpha, RGBA, palette transparency) is dropped: the colour channels are
      returned as stored, not composited on any background.
    - 16-bit samples keep their high byte (v >> 8), so an 8-bit image saved as 16-bit by
      value * 257 decodes to exactly the 8-bit image.
    No EXIF orientation is applied. Anything else (missing file, folder, empty, another format,
    truncated or corrupt bytes) raises DatasetError(path, reason).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except IsADirectoryError:
        raise DatasetError(path, "is a folder, not an image") from None
    except OSError as error:
        raise DatasetError(path, f"cannot read image file ({error.strerror or error})") from None
    if not data:
        raise DatasetError(path, "empty file (0 bytes)")
    kind = next((name for magic, name in SIGNATURES if data.startswith(magic)), None)
    if kind == "PNG":
        return _decode_png(path, data)
    if kind == "JPEG":
        return _decode_jpeg(path, data)
    if kind is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = "WebP"
    if kind is None:
        raise DatasetError(path, "not a PNG or JPEG image (unrecognised file contents)")
    raise DatasetError(path, f"unsupported image format ({kind}); use PNG or JPEG")


def _decode_png(path: Path, data: bytes) -> torch.Tensor:
    # PIL, not torchvision: torchvision 0.29's decode_png crashes the whole process (segfault)
    # on corrupt compressed data, where PIL raises an exception we can report.
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            if image.mode.startswith("I"):  # 16-bit grey ("I;16", "I;16B" or "I")
                grey = (np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8)
                rgb = np.stack([grey, grey, grey], axis=-1)
            else:  # PIL itself keeps the high byte of 16-bit RGB(A) and grey+alpha samples
                rgb = np.array(image.convert("RGB"))
    except Image.UnidentifiedImageError:
        raise DatasetError(path, "truncated or corrupt PNG (unreadable header)") from None
    except Exception as error:  # PIL reports bad bytes as OSError, SyntaxError, ValueError...
        raise DatasetError(path, f"truncated or corrupt PNG ({reason(error)})") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def _decode_jpeg(path: Path, data: bytes) -> torch.Tensor:
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its decoders in favour of torchcodec (not a dependency)
            warnings.simplefilter("ignore", DeprecationWarning)
            return tvio.decode_image(encoded, mode=tvio.ImageReadMode.RGB)
    except RuntimeError as error:
        raise DatasetError(path, f"truncated or corrupt JPEG ({reason(error)})") from None
