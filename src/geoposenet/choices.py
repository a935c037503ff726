"""The names a user chooses from: backbones, losses, norms, schedules, dataset formats, precisions,
uncertainty kinds.

Torch-free, so the command line lists them (and `--help` returns fast) without importing the
modules that implement them; those modules take their names from here (models.BACKBONES is keyed
by BACKBONE_NAMES, tested)."""

from __future__ import annotations

BACKBONE_NAMES: tuple[str, ...] = (
    "googlenet",
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_lite0",
)
LOSSES: tuple[str, ...] = ("beta", "learned", "reprojection")
NORMS: tuple[str, ...] = ("l1", "l2")
SCHEDULES: tuple[str, ...] = ("none", "cosine", "step")
DATASET_FORMATS: tuple[str, ...] = ("cambridge", "7scenes", "colmap", "nerfstudio")
FORMATS: tuple[str, ...] = ("auto", *DATASET_FORMATS)  # "auto": detected from the files
AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16")
POSE_FORMATS: tuple[str, ...] = ("csv", "json", "colmap")  # geoposenet predict --format
UNCERTAINTY_HEADS: tuple[str, ...] = ("none", "aleatoric")  # geoposenet train --uncertainty
# geoposenet eval/predict --uncertainty: auto = aleatoric when the model has that head, else none
UNCERTAINTY_KINDS: tuple[str, ...] = ("auto", "none", "aleatoric", "mc-dropout")
# geoposenet augment --renderer: auto = exact for the built-in room, else depth, else rotation
RENDERERS: tuple[str, ...] = ("auto", "exact", "depth", "rotation")
