"""The parts of a training run, built from its settings: scene (with the validation split held
out), model, loss, optimiser and datasets. The order of the random draws is part of the recipe:
the global torch RNG is seeded with `seed` right before the model is built, and nothing else
here draws from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoposenet.checkpoint import load_checkpoint
from geoposenet.config import TrainConfig, dataset_options
from geoposenet.data import PoseDataset
from geoposenet.distributed import World
from geoposenet.errors import InputError
from geoposenet.losses import PoseLoss, make_loss
from geoposenet.models import PoseNet
from geoposenet.scene import Scene, Split
from geoposenet.validation import Holdout, hold_out


@dataclass
class TrainingParts:
    """What a run trains and on what. lr_scales: the learning-rate factor of each optimiser
    param group (network; loss parameters s_x, s_q, moved by --weighting-lr)."""

    scene: Scene
    holdout: Holdout
    model: PoseNet
    loss: PoseLoss
    optimizer: torch.optim.Adam
    lr_scales: tuple[float, float]
    train_set: PoseDataset
    val_set: PoseDataset | None
    test_set: PoseDataset


def build_parts(config: TrainConfig, world: World) -> TrainingParts:
    """The parts for `config` on this process's device (model and loss moved there)."""
    from geoposenet.readers import load_scene

    with world.local_main_first():  # one process per node fills the caches
        options = dataset_options(config)
        scene = load_scene(Path(config.data), format=config.format, **options)
        scene, holdout = hold_out(scene, config.val)
        if config.loss == "reprojection" and not any(f.point_ids.size for f in scene.frames):
            raise InputError(
                f"{config.data}: the reprojection loss needs 3D points; this dataset has none"
            )
        torch.manual_seed(config.seed)  # the head's (and a random backbone's) initial weights
        model, init = _build_model(config, scene)
        offset = model.offset.cpu().numpy()
        points = config.points_per_frame if config.loss == "reprojection" else 0

        def dataset(split: Split, points: int) -> PoseDataset:
            return PoseDataset(
                scene, split, offset, resize=config.resize, crop=config.crop,
                points_per_frame=points, seed=config.seed,
            )  # fmt: skip

        train_set = dataset("train", points)
        val_set = dataset("val", 0) if holdout.val else None
        test_set = dataset("test", 0)
    model.to(world.device)
    loss = build_loss(config).to(world.device)
    if init is not None and init.get("loss_name") == config.loss and init.get("loss"):
        loss.load_state_dict(init["loss"])
    optimizer, lr_scales = make_optimizer(model, loss, config)
    return TrainingParts(
        scene, holdout, model, loss, optimizer, lr_scales, train_set, val_set, test_set
    )


def build_loss(config: TrainConfig) -> PoseLoss:
    """The loss of `config` (--loss, --norm, --beta, initial --s-x, --s-q; per image with the
    aleatoric head)."""
    aleatoric = config.uncertainty == "aleatoric"
    return make_loss(config.loss, config.norm, config.beta, config.s_x, config.s_q, aleatoric)


def make_optimizer(
    model: PoseNet, loss: PoseLoss, config: TrainConfig
) -> tuple[torch.optim.Adam, tuple[float, float]]:
    """Adam over two param groups, the network (with --weight-decay) and the loss's s_x, s_q
    (without), and the learning-rate factor of each (TrainingParts.lr_scales)."""
    optimizer = torch.optim.Adam(
        [
            {"params": list(model.parameters()), "weight_decay": config.weight_decay},
            {"params": list(loss.parameters()), "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    # the schedule scales both groups; s_x, s_q may move faster (--weighting-lr)
    return optimizer, (1.0, (config.weighting_lr or config.lr) / config.lr)


def _build_model(config: TrainConfig, scene: Scene) -> tuple[PoseNet, dict[str, Any] | None]:
    """A fresh model (offset = mean training centre; the aleatoric head's s starting at --s-x,
    --s-q) or one started from --init (with that checkpoint's content, whose loss parameters may
    start this run's; its head, aleatoric or not, is kept)."""
    if config.init is None:
        offset = torch.as_tensor(scene.train_centre())
        model = PoseNet(config.model_config(), offset=offset)
        if model.config.aleatoric:
            model.init_log_scales(config.s_x, config.s_q)
        return model, None
    init = load_checkpoint(Path(config.init))
    model = PoseNet.from_checkpoint(config.init).train()
    model.calibration = {}  # a new run: calibrated on its own validation split
    if model.config.backbone != config.backbone:
        raise InputError(
            f"--init {config.init}: a {model.config.backbone} model, but --backbone is "
            f"{config.backbone}"
        )
    if config.uncertainty == "aleatoric" and not model.config.aleatoric:
        raise InputError(
            f"--init {config.init}: a model without the aleatoric head, but --uncertainty is "
            "aleatoric; train that head from the start, or fine-tune with --uncertainty none"
        )
    return model, init


def true_poses(scene: Scene, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Camera centres (N, 3) and quaternions (N, 4) of a split's frames, in item order."""
    frames = scene.split(split)
    return np.stack([f.centre for f in frames]), np.stack([f.quaternion for f in frames])
