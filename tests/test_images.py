"""geoposenet.images.decode_image, the one image decoder (issue 14.2): every kind of PNG/JPEG
gives the pixels PIL (the oracle) gives, as (3, H, W) uint8 RGB; a 16-bit copy of an image
decodes, caches and predicts exactly as the 8-bit file; undecodable files raise DatasetError
naming the file, in training and in `geoposenet check` alike; damaged cache entries are rebuilt."""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import cambridge
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import geoposenet.imagecache as imagecache
from geoposenet import cli
from geoposenet.errors import DatasetError
from geoposenet.imagecache import ImageCache, load_image
from geoposenet.images import decode_image
from geoposenet.models import ModelConfig, PoseNet
from geoposenet.readers import check_dataset

# Both decoders read the same JPEG bytes, so they may differ only by implementation details
# (IDCT method, chroma upsampling, rounding of the CMYK -> RGB product): at most 2 levels.
JPEG_TOLERANCE = 2
KINDS = ["rgb8", "rgb16", "grey8", "grey16", "la", "rgba", "rgba16", "palette", "cmyk", "jpeg"]
PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, LA, RGB, RGBA)


def original(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    """A textured (height, width, 3) uint8 RGB image: a smooth gradient plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    ramp = np.stack([x * 255 / max(width - 1, 1), y * 255 / max(height - 1, 1), (x + y) % 256], -1)
    return np.clip(ramp + rng.integers(-40, 41, ramp.shape), 0, 255).astype(np.uint8)


def write_png16(path: Path, samples: np.ndarray) -> Path:
    """Write (H, W) or (H, W, C) uint16 samples as a 16-bit PNG (PIL cannot write 16-bit RGB)."""
    samples = samples.reshape(*samples.shape[:2], -1)
    height, width, channels = samples.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, PNG_COLOUR_TYPES[channels], 0, 0, 0)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)  # filter 0 per row
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def chw(image: Image.Image) -> torch.Tensor:
    """A PIL image converted to RGB by PIL, as a (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def write_kind(kind: str, rgb: np.ndarray, folder: Path) -> tuple[Path, torch.Tensor]:
    """Save the (H, W, 3) uint8 `rgb` as `kind` in `folder`; returns the file and the (3, H, W)
    uint8 pixels the decoder must give, from PIL. Alpha channels are random (they are dropped)."""
    image = Image.fromarray(rgb)
    grey = np.array(image.convert("L"))
    alpha = np.random.default_rng(1).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    path = folder / f"{kind}.{'jpg' if kind in ('cmyk', 'jpeg') else 'png'}"
    if kind == "rgb8":
        image.save(path)
    elif kind == "rgb16":
        write_png16(path, rgb.astype(np.uint16) * 257)
    elif kind == "grey8":
        image.convert("L").save(path)
    elif kind == "grey16":
        Image.fromarray(grey.astype(np.uint16) * 257).save(path)  # mode I;16
    elif kind == "la":
        Image.fromarray(np.dstack([grey, alpha]), "LA").save(path)
    elif kind == "rgba":
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    elif kind == "rgba16":
        write_png16(path, np.dstack([rgb, alpha]).astype(np.uint16) * 257)
    elif kind == "palette":
        image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path)
        return path, chw(Image.open(path))  # PIL's own RGB conversion of the palette image
    elif kind == "cmyk":  # real ink values, black (K) included, not a conversion from RGB
        cmyk = np.dstack([255 - rgb, alpha // 2])
        Image.fromarray(cmyk, "CMYK").save(path, quality=90)
        return path, chw(Image.open(path))
    elif kind == "jpeg":
        image.save(path, quality=90)
        return path, chw(Image.open(path))
    expected = image.convert("L") if kind in ("grey8", "grey16", "la") else image
    return path, chw(expected)


@pytest.mark.parametrize("kind", KINDS)
def test_decode_gives_the_pixels_pil_gives(kind: str, tmp_path: Path) -> None:
    path, expected = write_kind(kind, original(), tmp_path)
    image = decode_image(path)
    assert image.dtype == torch.uint8 and image.shape == (3, 20, 30)
    if path.suffix == ".jpg":
        assert (image.int() - expected.int()).abs().max() <= JPEG_TOLERANCE
    else:
        assert torch.equal(image, expected)


@settings(max_examples=15)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    channels=st.sampled_from([1, 2, 3, 4]),
    seed=st.integers(0, 2**16),
)
def test_16_bit_png_decodes_to_its_8_bit_original(
    height: int, width: int, channels: int, seed: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("bits")
    samples = np.random.default_rng(seed).integers(0, 256, (height, width, channels), np.uint8)
    eight = folder / "8.png"
    Image.fromarray(samples.squeeze(-1) if channels == 1 else samples).save(eight)
    sixteen = write_png16(folder / "16.png", samples.astype(np.uint16) * 257)
    assert torch.equal(decode_image(sixteen), decode_image(eight))


def test_predict_gives_the_same_pose_for_a_16_bit_copy(tmp_path: Path) -> None:
    model = PoseNet(
        ModelConfig(backbone="mobilenet_v3_small", pretrained="none", resize=32, crop=(32, 32))
    )
    rgb = original(40, 50)
    eight, sixteen = tmp_path / "8.png", tmp_path / "16.png"
    Image.fromarray(rgb).save(eight)
    write_png16(sixteen, rgb.astype(np.uint16) * 257)
    a, b = model.predict([eight]), model.predict([sixteen])
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.quaternions, b.quaternions)


def test_cache_of_mixed_kinds_reads_back_every_image(tmp_path: Path) -> None:
    paths = [write_kind(kind, original(seed=i), tmp_path)[0] for i, kind in enumerate(KINDS)]
    paths.insert(1, write_png16(tmp_path / "tall16.png", original(31, 17).astype(np.uint16) * 257))
    cache = ImageCache.open(paths, 12)
    assert cache.data_file.stat().st_size == int(np.prod(cache.shapes, axis=1).sum())
    for i, path in enumerate(paths):
        assert torch.equal(torch.from_numpy(np.array(cache[i])), load_image(path, 12)), path


def test_cache_refuses_an_image_that_is_not_3_channel_uint8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = write_kind("rgb8", original(), tmp_path)
    monkeypatch.setattr(
        imagecache, "load_image", lambda *_: torch.zeros(3, 8, 8, dtype=torch.uint16)
    )
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) uint8 image"):
        ImageCache.open([path], 8)


def encoded(format: str) -> bytes:
    """The bytes of `original()` saved as `format` by PIL."""
    out = io.BytesIO()
    Image.fromarray(original()).save(out, format=format)
    return out.getvalue()


def _corrupt_png(path: Path) -> None:
    """Damaged compressed data (this crashed torchvision's PNG decoder with a segfault)."""
    data = bytearray(encoded("PNG"))
    data[data.index(b"IDAT") + 20] ^= 0xFF
    path.write_bytes(bytes(data))


UNDECODABLE: dict[str, tuple[Callable[[Path], object], str]] = {
    "truncated png": (lambda p: p.write_bytes(encoded("PNG")[:500]), "truncated or corrupt PNG"),
    "png cut in its header": (lambda p: p.write_bytes(encoded("PNG")[:40]), "corrupt PNG"),
    "corrupt png": (_corrupt_png, "truncated or corrupt PNG"),
    "truncated jpeg": (lambda p: p.write_bytes(encoded("JPEG")[:400]), "corrupt JPEG"),
    "tiff": (
        lambda p: p.write_bytes(encoded("TIFF")),
        r"unsupported image format \(TIFF\); use PNG or JPEG",
    ),
    "gif": (lambda p: p.write_bytes(encoded("GIF")), r"unsupported image format \(GIF\)"),
    "text": (lambda p: p.write_text("not an image"), "not a PNG or JPEG image"),
    "zero bytes": (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    "folder": (lambda p: p.mkdir(), "is a folder, not an image"),
    "missing": (lambda p: None, "image file not found"),
}


@pytest.mark.parametrize("case", UNDECODABLE)
def test_undecodable_file_raises_dataset_error_naming_it(case: str, tmp_path: Path) -> None:
    make, message = UNDECODABLE[case]
    path = tmp_path / "frame.png"
    make(path)
    with pytest.raises(DatasetError, match=message) as info:
        decode_image(path)
    assert info.value.path == path and str(info.value).startswith(f"{path}: ")
    assert ".cpp" not in str(info.value)


@pytest.mark.parametrize("case", ["tiff", "truncated png", "corrupt png"])
def test_check_lists_the_undecodable_image(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = cambridge(tmp_path / "scene")
    image = root / "seq1" / "frame00002.png"
    image.unlink()
    make, message = UNDECODABLE[case]
    make(image)
    assert cli.main(["check", str(root)]) == 2
    err = capsys.readouterr().err
    assert "1 problem(s) found" in err
    problem = check_dataset(root).problems[0]
    assert problem in err and str(image.resolve()) in problem and re.search(message, problem)
    # the same reason training gives
    with pytest.raises(DatasetError) as info:
        load_image(image, 16)
    assert f"cannot be decoded ({info.value.reason})" in problem


def test_check_accepts_what_training_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = cambridge(tmp_path / "scene")
    frames = ["seq1/frame00001.png", "seq1/frame00002.png", "seq2/frame00001.png"]
    for frame, kind in zip(frames, ["rgb16", "palette", "cmyk"], strict=True):
        path, _ = write_kind(kind, original(), tmp_path)
        path.replace(root / frame)  # decoded by content, whatever the name says
    assert cli.main(["check", str(root)]) == 0, capsys.readouterr().err


def _rewrite_index(change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path, Path], None]:
    def damage(index_file: Path, data_file: Path) -> None:
        np.save(index_file, change(np.load(index_file)))

    return damage


def _index_with_one_channel(index: np.ndarray) -> np.ndarray:
    """Row 0 says 1 channel and 3x the width: the same byte count, shorter side and offsets."""
    index = index.copy()
    index[0, 1], index[0, 3] = 1, 3 * index[0, 3]
    return index


def _index_with_half_height(index: np.ndarray) -> np.ndarray:
    """Row 0 says half the height and twice the width: the same byte count, a shorter side
    other than the entry's `resize`."""
    index = index.copy()
    index[0, 2], index[0, 3] = index[0, 2] // 2, 2 * index[0, 3]
    return index


def _data_file_bytes(change: Callable[[bytes], bytes]) -> Callable[[Path, Path], None]:
    def damage(index_file: Path, data_file: Path) -> None:
        data_file.write_bytes(change(data_file.read_bytes()))

    return damage


DAMAGE: dict[str, Callable[[Path, Path], object]] = {
    "index of float64": _rewrite_index(lambda index: index.astype(np.float64)),
    "index missing a row": _rewrite_index(lambda index: index[:-1]),
    "index with 3 columns": _rewrite_index(lambda index: index[:, 1:]),
    "offsets not from 0": _rewrite_index(lambda index: index + np.array([8, 0, 0, 0])),
    "offsets not contiguous": _rewrite_index(lambda index: index[[0, 2, 1]]),
    "1 channel": _rewrite_index(_index_with_one_channel),
    "image of another size": _rewrite_index(_index_with_half_height),
    "data file too long": _data_file_bytes(lambda data: data + b"\x00" * 7),
    "data file truncated": _data_file_bytes(lambda data: data[: len(data) // 2]),
    "garbage index": lambda index_file, _: index_file.write_bytes(b"\x93NUMPY garbage" * 9),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_cache_entry_is_rebuilt(damage: str, tmp_path: Path) -> None:
    paths = [
        write_kind("rgb8", original(20, 30, seed=1), tmp_path)[0],
        write_kind("rgb16", original(26, 20, seed=2), tmp_path)[0],
        write_kind("grey8", original(16, 16, seed=3), tmp_path)[0],
    ]
    first = ImageCache.open(paths, 16)
    index_file = first.data_file.with_suffix(".index.npy")
    data = first.data_file.read_bytes()
    DAMAGE[damage](index_file, first.data_file)
    second = ImageCache.open(paths, 16)
    assert np.array_equal(second.index, first.index) and second.index.dtype == np.int64
    assert np.array_equal(np.load(index_file), first.index)
    assert second.data_file.read_bytes() == data
    for i, path in enumerate(paths):
        assert torch.equal(torch.from_numpy(np.array(second[i])), load_image(path, 16))
