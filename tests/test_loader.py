"""Whole-batch gathers (PoseDataset.batch) against the per-item definition, the loaders built on
them, and the prefetch thread: same batches, same training, stopped cleanly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_data import OFFSET, make_scene
from test_train import assert_same_weights, log, tiny_config
from torch.utils.data import Subset

from geoposenet.data import PoseDataset, crop_origin
from geoposenet.imagecache import load_image
from geoposenet.loader import Prefetched, batch_loader, in_order
from geoposenet.scene import Scene
from geoposenet.step import EpochBatches
from geoposenet.train import fit

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

SIZES = [(30, 40), (40, 30), (32, 32), (30, 40), (48, 36), (30, 40)]


@pytest.fixture(autouse=True)
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOPOSENET_CACHE", str(tmp_path / "cache"))


def reference(data: PoseDataset, scene: Scene, split: str, i: int) -> dict[str, Any]:
    """Item i as the module docstring of geoposenet.data defines it, one draw at a time: a
    generator seeded by (seed, epoch, i) draws the crop origin (training), then the subset of
    points (when the frame sees more than P)."""
    frame = scene.split(split)[i]  # type: ignore[arg-type]
    rng = np.random.default_rng((data.seed, data.epoch, i))
    image = load_image(frame.image, data.resize).numpy()
    ch, cw = data.crop
    top, left = crop_origin(*image.shape[1:], data.crop, rng if data.train else None)
    ids = frame.point_ids
    if len(ids) > data.points_per_frame:
        ids = ids[rng.choice(len(ids), data.points_per_frame, replace=False)]
    points = np.zeros((data.points_per_frame, 3), dtype=np.float32)
    points[: len(ids)] = (scene.points[ids] - OFFSET).astype(np.float32)
    return {
        "image": torch.from_numpy(image[:, top : top + ch, left : left + cw].copy()),
        "position": torch.tensor(frame.centre - OFFSET, dtype=torch.float32),
        "points": torch.from_numpy(points),
        "points_mask": torch.arange(data.points_per_frame) < len(ids),
        "index": i,
    }


@pytest.mark.parametrize("sizes", [SIZES, [(30, 40)] * 6], ids=["mixed", "uniform"])
@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_batch_is_the_per_item_definition(
    tmp_path: Path, sizes: list[tuple[int, int]], cache: bool, split: str
) -> None:
    scene = make_scene(tmp_path, sizes)
    for points in (0, 4, 100):
        data = PoseDataset(
            scene, split, OFFSET, resize=30, crop=(20, 24), points_per_frame=points, seed=4,
            cache=cache,
        )  # fmt: skip
        for epoch in (0, 3):
            data.set_epoch(epoch)
            order = list(np.random.default_rng(epoch).permutation(len(data)))
            batch = data.batch(order)
            assert batch["image"].shape == (len(order), 3, 20, 24)
            assert batch["index"].dtype == torch.int64 and batch["index"].tolist() == order
            for row, i in enumerate(order):
                expected = reference(data, scene, split, int(i))
                for key in ("image", "position", "points", "points_mask"):
                    assert torch.equal(batch[key][row], expected[key]), (key, i)
                item = data[int(i)]  # an item is a batch of one
                assert item["index"] == i and torch.equal(item["image"], expected["image"])


def test_empty_and_out_of_range_batches(tmp_path: Path) -> None:
    data = PoseDataset(make_scene(tmp_path), "train", OFFSET, resize=24, crop=20)
    empty = data.batch([])
    assert empty["image"].shape == (0, 3, 20, 20) and empty["points"].shape == (0, 128, 3)
    with pytest.raises(IndexError, match="out of range"):
        data.batch([0, 4])


def test_loaders_give_the_batches_in_order(tmp_path: Path) -> None:
    data = PoseDataset(make_scene(tmp_path), "train", OFFSET, resize=24, crop=12)
    sampler = EpochBatches(len(data), 2, seed=1)
    sampler.epoch = 2
    data.set_epoch(2)
    batches = [data.batch(b) for b in sampler]
    for workers in (0, 1):
        loaded = list(batch_loader(data, sampler, workers))
        assert len(loaded) == len(batches)
        for got, want in zip(loaded, batches, strict=True):
            assert all(torch.equal(got[k], want[k]) for k in want)
    subset = Subset(data, [3, 1, 2])
    rows = [b["index"].tolist() for b in in_order(subset, 2)]
    assert rows == [[3, 1], [2]]
    assert [b["index"].tolist() for b in in_order(data, 3)] == [[0, 1, 2], [3]]


def counting(n: int, fail_at: int | None = None, delay: float = 0.0) -> Iterator[int]:
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"item {i} is broken")
        time.sleep(delay)
        yield i


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "prefetch"]


def test_prefetched_keeps_order_and_raises_where_it_failed() -> None:
    with Prefetched(counting(20)) as items:
        assert list(items) == list(range(20))
        assert list(items) == []  # finished
    got = []
    with pytest.raises(ValueError, match="item 3 is broken"), Prefetched(counting(9, 3)) as items:
        got.extend(items)
    assert got == [0, 1, 2]
    assert not prefetch_threads()


def test_prefetched_stops_its_thread_on_break_and_on_error() -> None:
    with Prefetched(counting(10_000, delay=0.001)) as items:
        for i in items:
            if i == 5:
                break
    assert not prefetch_threads()
    with pytest.raises(KeyError), Prefetched(counting(10_000, delay=0.001)) as items:
        next(items)
        raise KeyError("the consumer failed")
    assert not prefetch_threads()


def test_training_is_the_same_with_and_without_prefetch_or_workers(
    tiny_scene_dir: Path, tmp_path: Path
) -> None:
    runs = {}
    for name, options in (
        ("prefetch", {"prefetch": True}),
        ("serial", {"prefetch": False}),
        ("worker", {"workers": 1}),
    ):
        config = tiny_config(
            tiny_scene_dir, tmp_path / name, epochs=2, loss="reprojection", points_per_frame=16,
            **options,
        )  # fmt: skip
        runs[name] = fit(config, progress=False)
        assert not prefetch_threads()
    for name in ("serial", "worker"):
        assert_same_weights(runs["prefetch"] / "last.pt", runs[name] / "last.pt")
        assert [r["train"] for r in log(runs["prefetch"])] == [r["train"] for r in log(runs[name])]
