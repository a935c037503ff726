"""PoseDataset items, the pre-resized image cache, the seeded loader and batch colour jitter."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader
from torchvision.io import encode_jpeg, write_png
from torchvision.transforms.v2 import functional as F

import geoposenet.imagecache as imagecache
from geoposenet.data import (
    PoseDataset,
    augment_batch,
    crop_origin,
)
from geoposenet.errors import DatasetError, InputError
from geoposenet.imagecache import load_image
from geoposenet.scene import Frame, Scene
from geoposenet.step import EpochBatches

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

OFFSET = np.array([0.5, -1.0, 2.0])
POINTS = 60


@pytest.fixture(autouse=True)
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("GEOPOSENET_CACHE", str(root))
    return root


def random_image(height: int, width: int, seed: int) -> torch.Tensor:
    """(3, H, W) uint8 with smooth structure plus noise, so crops at different places differ."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.resize(torch.rand(3, 4, 4, generator=g), [height, width], antialias=True)
    return (coarse * 200 + torch.rand(3, height, width, generator=g) * 55).to(torch.uint8)


def write_image(path: Path, image: torch.Tensor) -> None:
    if path.suffix == ".png":
        write_png(image, str(path))
    else:
        path.write_bytes(encode_jpeg(image, quality=90).numpy().tobytes())


def make_scene(
    root: Path, sizes: list[tuple[int, int]] | None = None, suffix: str = ".png"
) -> Scene:
    """Frames 0..n-1 (the last two are test frames) of the given (H, W) sizes; frame i sees
    3 * i points (frame 0 none), so some frames see more than P = 8 points."""
    sizes = sizes or [(30, 40)] * 6
    rng = np.random.default_rng(0)
    points = rng.normal(size=(POINTS, 3)) * 5
    frames = []
    for i, (h, w) in enumerate(sizes):
        path = root / f"seq1/frame{i}{suffix}"
        path.parent.mkdir(exist_ok=True)
        write_image(path, random_image(h, w, i))
        frames.append(
            Frame(
                name=f"seq1/frame{i}{suffix}",
                image=path,
                centre=[1.0 + i, 2.0, 3.0],
                quaternion=[-0.5, 0.5, -0.5, 0.5] if i % 2 else [1.0, 0.0, 0.0, 0.0],
                sequence="seq1",
                split="test" if i >= len(sizes) - 2 else "train",
                point_ids=rng.choice(POINTS, size=min(3 * i, POINTS), replace=False),
            )
        )
    return Scene(root, "tiny", "test", frames, points)


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    return make_scene(tmp_path)


def dataset(scene: Scene, split: str = "train", **kwargs: object) -> PoseDataset:
    options: dict[str, object] = {"resize": 24, "crop": (20, 24), "points_per_frame": 8}
    options.update(kwargs)
    return PoseDataset(scene, split, OFFSET, **options)  # type: ignore[arg-type]


def items_equal(a: dict[str, object], b: dict[str, object]) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(x, b[k]) if isinstance(x, torch.Tensor) else x == b[k] for k, x in a.items()
    )


def test_item_has_documented_format(scene: Scene) -> None:
    data = dataset(scene)
    assert len(data) == 4
    for index in range(len(data)):
        item = data[index]
        frame = scene.split("train")[index]
        assert item["index"] == index
        image = item["image"]
        assert image.dtype == torch.uint8 and image.shape == (3, 20, 24)
        assert item["position"].dtype == torch.float32 and item["position"].shape == (3,)
        # hand check: centre (1 + i, 2, 3) minus offset (0.5, -1, 2)
        assert item["position"].tolist() == [0.5 + index, 3.0, 1.0]
        q = item["quaternion"]
        assert q.dtype == torch.float32 and q.shape == (4,)
        assert abs(float(q.norm()) - 1.0) < 1e-6 and q[0] >= 0
        expected_q = [0.5, -0.5, 0.5, -0.5] if index % 2 else [1.0, 0.0, 0.0, 0.0]
        assert q.tolist() == expected_q
        points, mask = item["points"], item["points_mask"]
        assert points.dtype == torch.float32 and points.shape == (8, 3)
        assert mask.dtype == torch.bool and mask.shape == (8,)
        k = len(frame.point_ids)
        assert int(mask.sum()) == min(k, 8) and bool(mask[: min(k, 8)].all())
        assert not points[~mask].any()
        expected = (scene.points[frame.point_ids] - OFFSET).astype(np.float32)
        real = points[mask].numpy()
        if k <= 8:
            np.testing.assert_array_equal(real, expected)
        else:  # a subset without repeats
            matches = (real[:, None, :] == expected[None, :, :]).all(-1)
            assert (matches.sum(1) == 1).all() and len(set(matches.argmax(1))) == 8


def test_batch_from_loader(scene: Scene) -> None:
    data = dataset(scene)
    batch = next(iter(DataLoader(data, batch_size=3)))
    assert batch["image"].shape == (3, 3, 20, 24) and batch["image"].dtype == torch.uint8
    assert batch["position"].shape == (3, 3) and batch["quaternion"].shape == (3, 4)
    assert batch["points"].shape == (3, 8, 3) and batch["points_mask"].shape == (3, 8)
    assert batch["index"].tolist() == [0, 1, 2] and batch["index"].dtype == torch.int64


def test_no_points(scene: Scene) -> None:
    item = dataset(scene, points_per_frame=0)[3]
    assert item["points"].shape == (0, 3) and item["points_mask"].shape == (0,)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_cache_gives_the_uncached_tensors(tmp_path: Path, suffix: str) -> None:
    # mixed sizes and aspect ratios: the cache stores each image at its own shape
    sizes = [(30, 40), (40, 30), (32, 32), (30, 40), (48, 36)]
    scene = make_scene(tmp_path, sizes, suffix)
    for split, train in (("train", True), ("test", False), ("train", False)):
        cached = dataset(scene, split, crop=(20, 20), train=train)
        direct = dataset(scene, split, crop=(20, 20), train=train, cache=False)
        assert cached.images is not None and direct.images is None
        for epoch in (0, 1):
            cached.set_epoch(epoch)
            direct.set_epoch(epoch)
            for i in range(len(cached)):
                assert items_equal(cached[i], direct[i])


def test_uniform_cache_is_one_stacked_memmap(scene: Scene) -> None:
    images = dataset(scene).images
    assert images is not None
    stacked = images.stacked()
    assert stacked is not None and stacked.shape == (4, 3, 24, 32)
    assert isinstance(stacked.base, np.memmap) or isinstance(stacked, np.memmap)
    for i, frame in enumerate(scene.split("train")):
        assert torch.equal(torch.from_numpy(np.array(stacked[i])), load_image(frame.image, 24))
    # pickling (what spawned DataLoader workers receive) leaves the image bytes behind
    assert len(pickle.dumps(dataset(scene))) < 20_000


def test_cache_is_reused(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    first = dataset(scene)
    expected = [first[i] for i in range(len(first))]

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr(imagecache, "decode_image", no_decoding)
    second = dataset(scene)
    assert all(items_equal(second[i], expected[i]) for i in range(len(second)))


def test_cache_is_invalidated_when_an_image_changes(scene: Scene, cache_root: Path) -> None:
    first = dataset(scene, "test")
    frame = scene.split("test")[0]
    before = first[0]["image"]
    write_image(frame.image, random_image(30, 40, seed=99))
    stat = frame.image.stat()
    os.utime(frame.image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = dataset(scene, "test")
    after = second[0]["image"]
    assert not torch.equal(before, after)
    assert items_equal(second[0], dataset(scene, "test", cache=False)[0])
    assert len(list((cache_root / "images").glob("*.index.npy"))) == 2


def test_cache_depends_on_resize(scene: Scene) -> None:
    small = dataset(scene, resize=24).images
    large = dataset(scene, resize=30).images
    assert small is not None and large is not None
    assert small.shapes[0].tolist() == [3, 24, 32] and large.shapes[0].tolist() == [3, 30, 40]


@pytest.mark.parametrize("cache", [True, False])
def test_corrupt_image_names_the_file(scene: Scene, cache: bool) -> None:
    bad = scene.split("train")[2].image
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(DatasetError, match=r"frame2\.png") as info:
        dataset(scene, cache=cache)[2]
    assert info.value.path == bad


def test_missing_image_names_the_file(scene: Scene) -> None:
    missing = scene.split("train")[1].image
    missing.unlink()
    with pytest.raises(DatasetError, match=r"frame1\.png.*not found"):
        dataset(scene)


@pytest.mark.parametrize("cache", [True, False])
def test_crop_larger_than_the_resized_image_is_an_input_error(scene: Scene, cache: bool) -> None:
    with pytest.raises(InputError, match=r"crop 20x40 .* 24x32"):
        dataset(scene, crop=(20, 40), cache=cache)[0]


@pytest.mark.parametrize("bad", [0, -3, (10, 0), (2.5, 3)])
def test_bad_crop_size(scene: Scene, bad: object) -> None:
    with pytest.raises(InputError, match="crop"):
        dataset(scene, crop=bad)


def test_bad_arguments(scene: Scene) -> None:
    with pytest.raises(InputError, match="split"):
        dataset(scene, "validation")  # type: ignore[arg-type]  # "val" is a split now
    with pytest.raises(InputError, match="points_per_frame"):
        dataset(scene, points_per_frame=-1)
    only_train = Scene(scene.root, "t", "test", scene.split("train"), scene.points)
    with pytest.raises(DatasetError, match="no test frames"):
        dataset(only_train, "test")


def test_test_mode_is_a_deterministic_centre_crop(scene: Scene) -> None:
    data = dataset(scene, "test", crop=(16, 20))
    assert not data.train
    for i, frame in enumerate(scene.split("test")):
        full = load_image(frame.image, 24)  # (3, 24, 32): margins 8 and 12
        expected = full[:, 4:20, 6:26]
        for epoch in (0, 5):
            data.set_epoch(epoch)
            assert torch.equal(data[i]["image"], expected)


def test_train_crops_vary_across_epochs_and_reproduce(scene: Scene) -> None:
    data = dataset(scene, crop=12)
    epoch0 = [data[i]["image"] for i in range(len(data))]
    data.set_epoch(1)
    epoch1 = [data[i]["image"] for i in range(len(data))]
    assert any(not torch.equal(a, b) for a, b in zip(epoch0, epoch1, strict=True))
    again = dataset(scene, crop=12)
    again.set_epoch(1)
    assert all(torch.equal(again[i]["image"], epoch1[i]) for i in range(len(data)))
    other_seed = dataset(scene, crop=12, seed=1)
    other_seed.set_epoch(1)
    assert any(not torch.equal(other_seed[i]["image"], epoch1[i]) for i in range(len(data)))


def test_points_are_resampled_per_epoch(scene: Scene) -> None:
    data = dataset(scene, points_per_frame=4)  # frame 3 sees 9 points
    draws = []
    for epoch in range(4):
        data.set_epoch(epoch)
        draws.append(data[3]["points"])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    data.set_epoch(2)
    assert torch.equal(data[3]["points"], draws[2])


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    data=st.data(),
)
def test_crop_origin_geometry(height: int, width: int, data: st.DataObject) -> None:
    ch = data.draw(st.integers(1, height))
    cw = data.draw(st.integers(1, width))
    top, left = crop_origin(height, width, (ch, cw), None)
    assert (top, left) == ((height - ch) // 2, (width - cw) // 2)
    seed = data.draw(st.integers(0, 2**32))
    top, left = crop_origin(height, width, (ch, cw), np.random.default_rng(seed))
    assert 0 <= top <= height - ch and 0 <= left <= width - cw
    with pytest.raises(ValueError):
        crop_origin(height, width, (height + 1, cw), None)


@pytest.fixture(scope="module")
def module_scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    return make_scene(tmp_path_factory.mktemp("scene"))


@settings(max_examples=25, deadline=None)
@given(crop=st.tuples(st.integers(1, 24), st.integers(1, 32)), epoch=st.integers(0, 1000))
def test_train_crop_is_a_window_of_the_resized_image(
    module_scene: Scene, crop: tuple[int, int], epoch: int
) -> None:
    data = PoseDataset(module_scene, "train", OFFSET, resize=24, crop=crop, cache=False)
    data.set_epoch(epoch)
    image = data[1]["image"].numpy()
    full = load_image(module_scene.split("train")[1].image, 24).numpy()
    windows = np.lib.stride_tricks.sliding_window_view(full, crop, axis=(1, 2))
    assert (windows == image[:, None, None]).all(axis=(0, 3, 4)).any()


def test_loader_order_is_fixed_by_seed_and_epoch(scene: Scene) -> None:
    """The trainer's loader: EpochBatches as the batch sampler, the dataset at the same epoch."""

    def loader(seed: int, epoch: int, batch_size: int = 2) -> DataLoader:
        data = dataset(scene)
        batches = EpochBatches(len(data), batch_size, seed)
        batches.epoch = epoch
        data.set_epoch(epoch)
        return DataLoader(data, batch_sampler=batches)

    def order(seed: int, epoch: int) -> list[int]:
        return [i for batch in loader(seed, epoch) for i in batch["index"].tolist()]

    assert sorted(order(0, 0)) == [0, 1, 2, 3]
    assert order(0, 3) == order(0, 3)
    assert len({tuple(order(0, e)) for e in range(6)}) > 1
    whole = [sorted(b["index"].tolist()) for b in loader(0, 0, batch_size=4)]
    assert whole == [[0, 1, 2, 3]]


def test_persistent_workers_follow_set_epoch(scene: Scene) -> None:
    data = dataset(scene, crop=12)
    loader = DataLoader(data, batch_size=4, num_workers=1, persistent_workers=True)
    assert loader.persistent_workers
    for epoch in (0, 1):
        data.set_epoch(epoch)
        batch = next(iter(loader))
        expected = torch.stack([data[i]["image"] for i in range(4)])
        assert torch.equal(batch["image"], expected)


def batch_of_images(seed: int = 0) -> torch.Tensor:
    return torch.stack([random_image(16, 20, seed + i) for i in range(5)])


def test_augment_batch_is_deterministic_and_in_range() -> None:
    images = batch_of_images()
    a = augment_batch(images, torch.Generator().manual_seed(3))
    b = augment_batch(images, torch.Generator().manual_seed(3))
    c = augment_batch(images, torch.Generator().manual_seed(4))
    assert a.dtype == torch.float32 and a.shape == images.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    # uint8 and float [0, 1] inputs are the same images
    d = augment_batch(images.float() / 255, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, d)
    # each image gets its own factors: the same image repeated comes out differently
    same = augment_batch(images[:1].expand(4, -1, -1, -1), torch.Generator().manual_seed(3))
    assert not torch.equal(same[0], same[1])


def test_augment_batch_without_jitter_is_the_identity() -> None:
    images = batch_of_images()
    out = augment_batch(images, torch.Generator(), 0.0, 0.0, 0.0, 0.0)
    torch.testing.assert_close(out, images.float() / 255, atol=1e-6, rtol=0)


@settings(max_examples=30, deadline=None)
@given(
    strengths=st.tuples(*(st.floats(0, 1),) * 3, st.floats(0, 0.5)),
    seed=st.integers(0, 2**32),
)
def test_augment_batch_stays_in_unit_range(
    strengths: tuple[float, float, float, float], seed: int
) -> None:
    out = augment_batch(
        batch_of_images(seed % 100), torch.Generator().manual_seed(seed), *strengths
    )
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_augment_batch_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="B, 3, H, W"):
        augment_batch(torch.zeros(3, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match="hue"):
        augment_batch(torch.zeros(1, 3, 8, 8), torch.Generator(), hue=0.7)
