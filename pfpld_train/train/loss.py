"""Masked wing loss on 112-pixel crop coordinates, plus a pose loss where the pose is known.

Per sample ``i`` (manifest weight ``s_i``, valid points ``V_i``, point weights ``g_k``)::

    lm_i   = (1 / |V_i|) * sum_{k in V_i} g_k * (wing(dx_ik) + wing(dy_ik))      (dx, dy in pixels of the 112 crop)
    pose_i = mean over (pitch, yaw, roll) of |pred - gt| in degrees              (only where the pose is known)
    loss   = sum_i s_i * (lm_i + pose_weight * known_i * pose_i) / sum_i s_i

``wing(x) = w * ln(1 + |x| / epsilon)`` for ``|x| < w``, else ``|x| - C`` with ``C = w - w ln(1 + w / epsilon)``
(continuous at ``w``).

Choice of ``w = 10``, ``epsilon = 2`` for the 112 crop: the crop is 1.2x the landmark extent, so the
outer-eye-corner distance is about 53 px on real WFLW faces (median 0.48 of the crop side); a good
model's error (NME ~5 %) is ~2.7 px and the failure threshold (NME 10 %) ~5.3 px. With ``w = 10``
(~20 % of the inter-ocular distance) every error that matters lies in the log branch, whose gradient
``w / (epsilon + |x|)`` is 5 at 0, 2.1 at 2.7 px, 1.4 at 5.3 px: small and medium errors weigh more than
under L1; errors above 10 px (gross: occluded contour points, label noise) get the L1 gradient of 1
and cannot dominate. ``epsilon = 2`` keeps the curvature near zero moderate (below ~1 px, where label
noise lives, the loss is close to L1 with slope ~5). On ``[0, 1]`` coordinates, as the original
pipeline did, ``w = 10`` puts every error deep in the log branch with an almost constant gradient
``w / epsilon``, i.e. plain L1 - the reason to work in pixels.

The eye-group weight multiplies the wing value (outside the log), so it scales the loss and gradient
of eyelid and eye-corner points uniformly instead of bending the curve.

Invalid points (``valid`` False; their targets may be NaN) contribute nothing to the loss or to any
gradient; samples with no valid point contribute no landmark term.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from landmark_unify.core.layouts import get_layout

from ..data.crop import CROP_SIZE

__all__ = ["LossConfig", "landmark_loss", "pfpld_loss", "point_weights", "pose_loss", "wing"]


@dataclass(frozen=True)
class LossConfig:
    """Loss hyper-parameters (see the module docstring). Units: pixels of the 112 crop, degrees."""

    wing_w: float = 10.0
    wing_epsilon: float = 2.0
    eye_weight: float = 1.5
    eye_groups: tuple[str, ...] = ("eye",)
    pose_weight: float = 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["eye_groups"] = list(self.eye_groups)
        return d


def wing(x: torch.Tensor, w: float = 10.0, epsilon: float = 2.0) -> torch.Tensor:
    """Elementwise wing loss of the error ``x`` (any shape, same units as ``w``)."""
    a = x.abs()
    c = w - w * math.log1p(w / epsilon)
    return torch.where(a < w, w * torch.log1p(a / epsilon), a - c)


def point_weights(cfg: LossConfig, device=None) -> torch.Tensor:
    """``(98,)`` float32: ``eye_weight`` on the points of ``cfg.eye_groups`` of the wflw98 layout, else 1."""
    layout = get_layout("wflw98")
    g = torch.ones(layout.num_points, dtype=torch.float32)
    for group in cfg.eye_groups:
        g[torch.as_tensor(layout.group_indices(group), dtype=torch.long)] = cfg.eye_weight
    return g.to(device)


def landmark_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor, cfg: LossConfig
) -> torch.Tensor:
    """Per-sample masked wing loss ``(B,)``.

    ``pred``: ``(B, 196)`` or ``(B, 98, 2)`` crop units; ``target``: ``(B, 98, 2)`` crop units, any value
    (NaN too) where invalid; ``valid``: ``(B, 98)`` bool; ``weights``: ``(98,)`` point weights.
    """
    pred = pred.float().reshape(target.shape[0], -1, 2)
    valid = valid.bool()
    # Replace invalid targets before any arithmetic, so NaN/inf cannot leak into values or gradients.
    safe_target = torch.where(valid[..., None], target.float(), torch.zeros((), device=target.device))
    err = (pred - safe_target) * CROP_SIZE
    per_point = wing(err, cfg.wing_w, cfg.wing_epsilon).sum(-1) * weights.to(pred.device)
    per_point = torch.where(valid, per_point, torch.zeros((), device=pred.device))
    count = valid.sum(1)
    return per_point.sum(1) / count.clamp(min=1)


def pose_loss(pred_rad: torch.Tensor, target_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean absolute angle error in degrees ``(B,)`` and the known mask ``(B,)``.

    ``pred_rad``: ``(B, 3)`` network output (radians); ``target_deg``: ``(B, 3)`` degrees, NaN where unknown.
    """
    known = torch.isfinite(target_deg).all(1)
    safe = torch.where(known[:, None], target_deg.float(), torch.zeros((), device=target_deg.device))
    err = (pred_rad.float() * (180.0 / math.pi) - safe).abs().mean(1)
    return torch.where(known, err, torch.zeros((), device=err.device)), known


def pfpld_loss(
    pred_landmarks: torch.Tensor,
    pred_pose: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    pose_deg: torch.Tensor,
    sample_weight: torch.Tensor,
    cfg: LossConfig,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Batch loss (scalar) and its parts ``{"landmark", "pose", "pose_faces"}`` (weighted means; detached
    0-d tensors, so logging them need not synchronise a GPU every step).

    ``sample_weight``: ``(B,)`` manifest weights (>= 0); the batch loss is their weighted mean.
    """
    if weights is None:
        weights = point_weights(cfg, pred_landmarks.device)
    lm = landmark_loss(pred_landmarks, target, valid, weights, cfg)
    pz, known = pose_loss(pred_pose, pose_deg)
    s = sample_weight.float()
    denom = s.sum().clamp(min=1e-12)
    total = (s * (lm + cfg.pose_weight * pz)).sum() / denom
    with torch.no_grad():
        known_w = (s * known).sum()
        parts = {
            "landmark": (s * lm).sum() / denom,
            "pose": torch.where(known_w > 0, (s * pz).sum() / known_w.clamp(min=1e-12), torch.nan),
            "pose_faces": known.sum(),
        }
    return total, parts
