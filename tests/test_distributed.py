"""Distributed training: 2 CPU processes with gloo on the `tiny` scene, launched by torchrun
(the command line) and by torch.multiprocessing (to look inside every rank).

BatchNorm and the equality test: with DDP each process computes batch statistics over its own
slice (PyTorch's SyncBatchNorm runs only on GPUs), so 2 ranks x batch b and 1 process x batch 2b are
different computations whenever BatchNorm is in training mode. Measured here (mobilenet_v3_small
from random weights, b = 2, one epoch of 5 Adam steps at lr 1e-3): the two runs' weights differ by
136% of the weight change itself (max 9.8e-3 per weight), so no tolerance can "cover" it. The
equality test therefore keeps BatchNorm on its running statistics (eval mode) in both runs, which
makes them the same mathematics; see `test_two_ranks_match_one_process_with_twice_the_batch` for
the tolerance.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from geoposenet.checkpoint import load_checkpoint
from geoposenet.config import TrainConfig, resolve_config
from geoposenet.distributed import World, merge_shards, per_rank_batch
from geoposenet.errors import InputError, TrainingInterrupted
from geoposenet.models import PoseNet
from geoposenet.step import EpochBatches

WORLD = 2
FAST = {
    "backbone": "mobilenet_v3_small",
    "pretrained": "none",
    "resize": 48,
    "crop": (48, 64),
    "lr": 1e-3,
    "threads": 1,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exact_config(data: Path, out: Path, batch_size: int) -> TrainConfig:
    """One epoch without randomness in the step (no dropout, no colour jitter)."""
    values: dict[str, Any] = {**FAST, "batch_size": batch_size, "epochs": 1}
    return resolve_config("cpu", data=str(data), out=str(out), dropout=0.0, jitter=0.0, **values)


def frozen_batchnorm_train(self: PoseNet, mode: bool = True) -> PoseNet:
    """PoseNet.train that keeps every BatchNorm layer on its running statistics."""
    nn.Module.train(self, mode)
    for module in self.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return self


def _worker(rank: int, config: dict[str, Any], resume: bool, port: int, stop_at: int) -> None:
    """One rank: join the 2-process group through torchrun's environment variables, train, and
    save this rank's own final weights to OUT/rank<r>.pt (rank 0's are also in last.pt). With
    `stop_at`, rank 1 alone sends itself SIGINT during its `stop_at`-th optimiser step."""
    from geoposenet import train

    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    PoseNet.train = frozen_batchnorm_train  # type: ignore[method-assign,assignment]
    out = Path(config["out"])
    fit_run = train.Trainer.fit

    def fit_and_save(self: train.Trainer) -> Path:
        run = fit_run(self)
        state = {"model": self.parts.model.state_dict(), "loss": self.parts.loss.state_dict()}
        torch.save(state, out / f"rank{rank}.pt")
        return run

    train.Trainer.fit = fit_and_save  # type: ignore[method-assign]
    if stop_at and rank == 1:
        step = torch.optim.Adam.step
        count = {"steps": 0}

        def step_then_signal(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
            result = step(self, *args, **kwargs)
            count["steps"] += 1
            if count["steps"] == stop_at:
                os.kill(os.getpid(), signal.SIGINT)
            return result

        torch.optim.Adam.step = step_then_signal  # type: ignore[method-assign]
    try:
        train.fit(TrainConfig.from_dict(config), resume=resume, progress=False)
    except TrainingInterrupted as stopped:
        (out / f"stopped{rank}.json").write_text(json.dumps(stopped.signum))


def spawn(config: TrainConfig, resume: bool = False, stop_at: int = 0) -> Path:
    args = (config.to_dict(), resume, free_port(), stop_at)
    mp.start_processes(_worker, args=args, nprocs=WORLD, start_method="fork")
    return Path(config.out)


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


@pytest.fixture(scope="module")
def two_ranks(tiny_scene_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch on 2 ranks x batch 2 (global batch 4), BatchNorm frozen, no dropout/jitter."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    return spawn(exact_config(tiny_scene_dir, out, 2 * WORLD))


def test_rank_slices_partition_the_global_batch() -> None:
    for world, batch in ((2, 4), (3, 6), (4, 8)):
        single = EpochBatches(23, batch, seed=5)
        ranks = [EpochBatches(23, batch, seed=5, rank=r, world=world) for r in range(world)]
        for sampler in (single, *ranks):
            sampler.epoch = 2
        slices = [list(r) for r in ranks]
        assert all(len(s) == len(single) for s in slices)
        for step, whole in enumerate(single):
            parts = [s[step] for s in slices]
            assert all(len(p) == batch // world for p in parts)
            assert [i for p in parts for i in p] == whole  # disjoint, in order, none dropped
    small = [list(EpochBatches(5, 8, seed=0, rank=r, world=2)) for r in range(2)]
    assert [len(b[0]) for b in small] == [2, 2]  # 5 items: a global batch of 4, split evenly
    with pytest.raises(InputError, match="cannot fill"):
        EpochBatches(1, 8, seed=0, world=2)


def test_per_rank_batch_and_single_process_world() -> None:
    assert per_rank_batch(64, 4) == 16 and per_rank_batch(5, 1) == 5
    with pytest.raises(InputError, match=r"--batch-size 6 .*divisible.*\(4\); try 4 or 8"):
        per_rank_batch(6, 4)
    world = World()
    assert world.max(3) == 3 and world.mean({"a": 1.5}) == {"a": 1.5}
    assert world.gather("x") == ["x"] and world.shard(3) == [0, 1, 2]
    shards = [([0, 2], np.array([[0.0], [2.0]])), ([1], np.array([[1.0]]))]
    assert merge_shards(shards, 3).ravel().tolist() == [0.0, 1.0, 2.0]


def test_two_ranks_match_one_process_with_twice_the_batch(
    two_ranks: Path, tiny_scene_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tolerance: max |difference| <= 1e-3 per weight (one step at lr 1e-3) and the difference
    <= 1e-3 of the weight change over the epoch (root sum of squares). The two runs differ only in
    float summation order (convolutions over 2 vs 4 images, the gloo all-reduce of two partial
    gradient means), ~1e-7 relative in the gradients; Adam divides every gradient component by its
    own running magnitude, which turns that noise into up to lr-sized steps for components whose
    gradient is near zero. Measured: max 4.5e-5, relative 1.4e-4. A wrong gradient scale or batch
    slice moves the weights by O(1) of their change (per-rank BatchNorm statistics: 1.36)."""
    ranks = [torch.load(two_ranks / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for part in ("model", "loss"):  # the replicas stay identical, s_x and s_q included
        trained = {k: v for k, v in ranks[0][part].items() if "running" not in k}
        assert_same(trained, {k: ranks[1][part][k] for k in trained})
    assert {"s_x", "s_q"} <= ranks[0]["loss"].keys()

    monkeypatch.setattr(PoseNet, "train", frozen_batchnorm_train)
    from geoposenet.train import fit

    single = fit(exact_config(tiny_scene_dir, tmp_path / "single", 2 * WORLD), progress=False)
    a, b = load_checkpoint(two_ranks / "last.pt"), load_checkpoint(single / "last.pt")
    torch.manual_seed(0)  # the trainer's seeded initial weights
    start = PoseNet(TrainConfig(**FAST).model_config()).state_dict()
    difference = change = 0.0
    for name, weight in b["model"].items():
        if name in start and weight.is_floating_point() and "running" not in name:
            gap = (a["model"][name] - weight).double()
            assert gap.abs().max() <= 1e-3, name
            difference += float(gap.square().sum())
            change += float((weight - start[name]).double().square().sum())
    assert change > 0 and (difference / change) ** 0.5 <= 1e-3
    for name in ("s_x", "s_q"):
        assert abs(float(a["loss"][name]) - float(b["loss"][name])) <= 1e-5
    assert a["metrics"]["test"]["num_frames"] == 10  # evaluation gathered both ranks' shards


def test_signal_on_one_rank_stops_both_and_resume_equals_uninterrupted(
    two_ranks: Path, tiny_scene_dir: Path, tmp_path: Path
) -> None:
    config = exact_config(tiny_scene_dir, tmp_path / "run", 2 * WORLD)
    spawn(config, stop_at=3)  # SIGINT reaches rank 1 only, during its 3rd step
    assert [json.loads((tmp_path / "run" / f"stopped{r}.json").read_text()) for r in (0, 1)] == [
        signal.SIGINT, signal.SIGINT
    ]  # fmt: skip
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["batch"]) == (0, 3)
    spawn(config, resume=True)  # every rank loads last.pt (weights, Adam state, position)
    for rank in range(WORLD):
        resumed = torch.load(tmp_path / "run" / f"rank{rank}.pt", weights_only=True)
        reference = torch.load(two_ranks / f"rank{rank}.pt", weights_only=True)
        for part in ("model", "loss"):
            assert_same(resumed[part], reference[part])


def test_torchrun_command_line(tiny_scene_dir: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node=2 -m geoposenet train`: the loss falls, rank 0 alone writes the
    run directory and prints, and the checkpoint loads and predicts in a single process."""
    run = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_port", str(free_port()), "-m", "geoposenet", "train", str(tiny_scene_dir),
        "--out", str(run), "--preset", "cpu", "--backbone", "mobilenet_v3_small",
        "--pretrained", "none", "--resize", "48", "--crop", "48x64", "--batch-size", "4",
        "--epochs", "3", "--lr", "1e-3", "--dropout", "0.1", "--jitter", "0.2", "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained:") == 1
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[-1]["train"]["loss"] < records[0]["train"]["loss"]
    names = {p.name for p in run.iterdir()}
    assert names <= {"config.toml", "log.jsonl", "last.pt", "best.pt", "tensorboard"}
    assert load_checkpoint(run / "last.pt")["train_config"]["batch_size"] == 4

    model = PoseNet.from_checkpoint(run / "last.pt")
    images = sorted((tiny_scene_dir / "seq3").glob("*.png"))[:3]
    poses = model.predict(images)
    assert poses.positions.shape == (3, 3) and np.isfinite(poses.positions).all()
    assert np.allclose(np.linalg.norm(poses.quaternions, axis=1), 1.0)
