"""The paper's loss functions, behind one interface.

Every loss is called as `loss(position, quaternion, batch)` with the predicted camera centre
(B, 3) in the centred scene frame, the predicted (raw or unit) world -> camera quaternion (B, 4),
and the batch: "position" (B, 3), "quaternion" (B, 4) canonical targets, and for reprojection
"points" (B, P, 3) visible world points in the centred frame with "points_mask" (B, P) bool.
It returns the scalar loss and a dict of its parts as detached 0-d tensors for logging (no
device sync in the loss; the trainer reads them when it logs).

The aleatoric loss also takes the per-image s_x(I), s_q(I) (B, 2) of the model's uncertainty
head as `log_scales` (geoposenet.distributed.Objective passes them to it alone).

`norm` is the paper's gamma: "l1" (sum of absolute values, the paper's choice) or "l2"
(Euclidean length); both are taken per sample and averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn

from geoposenet.choices import LOSSES, NORMS
from geoposenet.errors import InputError
from geoposenet.geometry import normalize_quaternion, project

Norm = Literal["l1", "l2"]
LossName = Literal["beta", "learned", "reprojection"]
Parts = dict[str, Tensor]


def vector_norm(difference: Tensor, norm: Norm) -> Tensor:
    """Per-vector norm over the last dimension: (..., D) -> (...)."""
    if norm == "l1":
        return difference.abs().sum(dim=-1)
    if norm == "l2":
        return torch.linalg.vector_norm(difference, dim=-1)
    raise InputError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def pose_distances(
    position: Tensor, quaternion: Tensor, batch: Mapping[str, Tensor], norm: Norm
) -> tuple[Tensor, Tensor]:
    """Per-image L_x(I) = ||x - x^||_gamma and L_q(I) = ||q - q^ / ||q^|| ||_gamma (eq. 1: the
    prediction q^ is normalised here, the target q is a canonical unit quaternion): (B,), (B,)."""
    return (
        vector_norm(position - batch["position"], norm),
        vector_norm(batch["quaternion"] - normalize_quaternion(quaternion), norm),
    )


class PoseLoss(nn.Module):
    """Base of the losses; each defines forward(position, quaternion, batch) as described in
    the module docstring."""

    def __init__(self, norm: Norm = "l1") -> None:
        super().__init__()
        vector_norm(torch.zeros(1, 1), norm)  # validates the name early
        self.norm: Norm = norm

    def pose_parts(
        self, position: Tensor, quaternion: Tensor, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """(L_x, L_q) of the prediction against the batch's targets: the batch means of
        `pose_distances`."""
        loss_x, loss_q = pose_distances(position, quaternion, batch, self.norm)
        return loss_x.mean(), loss_q.mean()


class BetaLoss(PoseLoss):
    """PoseNet's linear sum L_beta = L_x + beta * L_q (eq. 2); beta needs a per-scene search."""

    def __init__(self, beta: float = 500.0, norm: Norm = "l1") -> None:
        super().__init__(norm)
        if not beta > 0:
            raise InputError(f"beta must be positive, got {beta}")
        self.beta = float(beta)

    def forward(
        self, position: Tensor, quaternion: Tensor, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, Parts]:
        loss_x, loss_q = self.pose_parts(position, quaternion, batch)
        loss = loss_x + self.beta * loss_q
        parts = {"loss": loss.detach(), "position": loss_x.detach(), "orientation": loss_q.detach()}
        return loss, parts


class LearnedWeightingLoss(PoseLoss):
    """Homoscedastic-uncertainty weighting (eq. 4):
    L = L_x exp(-s_x) + s_x + L_q exp(-s_q) + s_q, with s = log sigma^2 learned with the network.

    `s_x`, `s_q` are parameters of this module: give them to the optimiser (without weight decay;
    see `weighting_parameters`). The loss may go negative; that is expected.
    """

    def __init__(self, s_x: float = 0.0, s_q: float = -3.0, norm: Norm = "l1") -> None:
        super().__init__(norm)
        self.s_x = nn.Parameter(torch.tensor(float(s_x)))
        self.s_q = nn.Parameter(torch.tensor(float(s_q)))

    def forward(
        self, position: Tensor, quaternion: Tensor, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, Parts]:
        loss_x, loss_q = self.pose_parts(position, quaternion, batch)
        loss = loss_x * torch.exp(-self.s_x) + self.s_x + loss_q * torch.exp(-self.s_q) + self.s_q
        return loss, {
            "loss": loss.detach(),
            "position": loss_x.detach(),
            "orientation": loss_q.detach(),
            "s_x": self.s_x.detach().clone(),
            "s_q": self.s_q.detach().clone(),
        }


class AleatoricLoss(PoseLoss):
    """Heteroscedastic (per-image) uncertainty weighting, Kendall & Gal (NeurIPS 2017): eq. 4
    with the model's per-image s_x(I), s_q(I) in place of the scene-level s_x, s_q,
    L = mean over the batch of L_x(I) exp(-s_x(I)) + s_x(I) + L_q(I) exp(-s_q(I)) + s_q(I).

    No parameters of its own: the s come from the pose head, bounded there (models.PoseNet), so
    an image's weight exp(-s) cannot run away. The logged "s_x", "s_q" are their batch means,
    comparable with the scene-level values that --uncertainty none learns."""

    def forward(
        self,
        position: Tensor,
        quaternion: Tensor,
        batch: Mapping[str, Tensor],
        log_scales: Tensor | None = None,
    ) -> tuple[Tensor, Parts]:
        if log_scales is None:
            raise InputError("the aleatoric loss needs the model's per-image s_x(I), s_q(I)")
        loss_x, loss_q = pose_distances(position, quaternion, batch, self.norm)
        s_x, s_q = log_scales[:, 0], log_scales[:, 1]
        loss = (loss_x * torch.exp(-s_x) + s_x + loss_q * torch.exp(-s_q) + s_q).mean()
        return loss, {
            "loss": loss.detach(),
            "position": loss_x.detach().mean(),
            "orientation": loss_q.detach().mean(),
            "s_x": s_x.detach().mean(),
            "s_q": s_q.detach().mean(),
        }


class ReprojectionLoss(PoseLoss):
    """Geometric reprojection loss (eq. 7): for each image, the mean over its visible points of
    ||pi(x, q, g) - pi(x^, q^, g)||_gamma, averaged over the images that have points.

    pi projects with K = identity (normalised image coordinates) unless `intrinsics` (3, 3) is
    given. Robustness (the choice, documented): depths below `min_depth` (scene units) are
    clamped to it, so points at or behind the predicted camera stay finite and keep a gradient
    through their x, y; per-point errors above `max_error` (in the projection's units) are clipped,
    so one wild point cannot dominate and contributes no gradient while it is that wrong.
    Images without points contribute nothing; a batch with no points at all gives a zero loss
    that still depends on the prediction (so the graph stays connected).
    """

    intrinsics: Tensor | None  # (3, 3) K, or None for normalised coordinates

    def __init__(
        self,
        norm: Norm = "l1",
        intrinsics: Tensor | None = None,
        min_depth: float = 0.05,
        max_error: float = 10.0,
    ) -> None:
        super().__init__(norm)
        if not (min_depth > 0 and max_error > 0):
            raise InputError("min_depth and max_error of the reprojection loss must be positive")
        self.min_depth = float(min_depth)
        self.max_error = float(max_error)
        self.register_buffer("intrinsics", intrinsics, persistent=False)

    def forward(
        self, position: Tensor, quaternion: Tensor, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, Parts]:
        if "points" not in batch:
            raise InputError("the reprojection loss needs the 3D points seen in each image")
        points, mask = batch["points"], batch["points_mask"]
        k = self.intrinsics
        true_uv, _ = project(points, batch["position"], batch["quaternion"], k, self.min_depth)
        pred_uv, _ = project(points, position, quaternion, k, self.min_depth)
        error = vector_norm(pred_uv - true_uv, self.norm).clamp_max(self.max_error)
        error = torch.where(mask, error, torch.zeros_like(error))  # padding: no value, no grad
        count = mask.sum(dim=-1)
        per_image = error.sum(dim=-1) / count.clamp_min(1)
        has_points = count > 0
        loss = (per_image * has_points).sum() / has_points.sum().clamp_min(1)
        loss = loss + 0.0 * position.sum()  # keep the graph connected when no image has points
        with torch.no_grad():
            loss_x, loss_q = self.pose_parts(position, quaternion, batch)
        return loss, {
            "loss": loss.detach(),
            "reprojection": loss.detach(),
            "position": loss_x.detach(),
            "orientation": loss_q.detach(),
        }


def make_loss(
    name: str,
    norm: str = "l1",
    beta: float = 500.0,
    s_x: float = 0.0,
    s_q: float = -3.0,
    aleatoric: bool = False,
) -> PoseLoss:
    """Build a loss by name: 'beta' (eq. 2), 'learned' (eq. 4; per image with `aleatoric`,
    whose s_x, s_q start values are the model's) or 'reprojection' (eq. 7)."""
    if norm not in NORMS:
        raise InputError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    gamma: Norm = "l1" if norm == "l1" else "l2"
    if name == "beta":
        return BetaLoss(beta, gamma)
    if name == "learned":
        return AleatoricLoss(gamma) if aleatoric else LearnedWeightingLoss(s_x, s_q, gamma)
    if name == "reprojection":
        return ReprojectionLoss(gamma)
    raise InputError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
