"""The PFPLD network: 98 landmarks and head pose from a 112x112 face crop.

The module names and parameter shapes are those of the published PFPLD checkpoints
(``PFLDInference``), so their ``state_dict`` loads with ``strict=True``. The layer layout is the one of
the reference Caffe graph ``pfpld.prototxt`` (batch norms folded there).

Input
    ``(N, 3, 112, 112) float32``, RGB, values in ``[0, 1]`` (pixel / 255), the standard crop of
    :mod:`pfpld_train.data.crop`.

Outputs of :meth:`PFPLD.forward`
    ``pose``: ``(N, 3) float32``, **radians**, order **(pitch, yaw, roll)**, in the project's angle
    convention (the 300W-LP ``Pose_Para`` convention: ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``, model frame
    with y up and z toward the camera; a horizontal flip of the image negates yaw and roll). The manifest
    stores degrees; multiply by ``180 / pi`` (:func:`pose_to_degrees`) to compare.

    ``landmarks``: ``(N, 196) float32``, ``x0, y0, x1, y1, ...`` of the 98 WFLW points, in units of the
    crop side (0 = the crop's top/left edge, 1 = its bottom/right edge). Multiply by 112 for pixels of
    the 112 crop; map back to the image with :func:`pfpld_train.data.crop.crop_to_image`.

``bn8`` and ``fc_aux`` exist because the published checkpoints have them; the forward pass does not use
them (as in the reference network). 1,729,674 parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PFPLD", "InvertedResidual", "build_model", "conv_bn", "count_parameters", "pose_to_degrees"]

#: Number of trainable parameters of the network, including the unused ``bn8`` and ``fc_aux``.
NUM_PARAMETERS = 1_729_674
INPUT_SIZE = 112
NUM_POINTS = 98


def conv_bn(inp: int, oup: int, kernel: int, stride: int, padding: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU, as ``Sequential`` indices 0, 1, 2 (checkpoint key layout)."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, padding, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand, 3x3 depthwise (``stride``), 1x1 linear project.

    ``use_res_connect`` adds the input to the output (only valid when ``stride == 1`` and
    ``inp == oup``). Parameters live in ``self.conv`` (indices 0-7) as in the published checkpoints.
    """

    def __init__(self, inp: int, oup: int, stride: int, use_res_connect: bool, expand_ratio: int) -> None:
        super().__init__()
        if use_res_connect and (stride != 1 or inp != oup):
            raise ValueError(f"residual needs stride 1 and inp == oup, got stride={stride}, {inp}->{oup}")
        hidden = inp * expand_ratio
        self.use_res_connect = use_res_connect
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class PFPLD(nn.Module):
    """PFPLD landmark + pose network (``PFLDInference`` key layout). See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        # Stem: 112 -> 56.
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        # 56 -> 28 (out1 feeds the pose branch).
        self.conv3_1 = InvertedResidual(64, 64, 2, False, 2)
        self.block3_2 = InvertedResidual(64, 64, 1, True, 2)
        self.block3_3 = InvertedResidual(64, 64, 1, True, 2)
        self.block3_4 = InvertedResidual(64, 64, 1, True, 2)
        self.block3_5 = InvertedResidual(64, 64, 1, True, 2)
        # 28 -> 14.
        self.conv4_1 = InvertedResidual(64, 128, 2, False, 2)
        self.conv5_1 = InvertedResidual(128, 128, 1, False, 4)
        self.block5_2 = InvertedResidual(128, 128, 1, True, 4)
        self.block5_3 = InvertedResidual(128, 128, 1, True, 4)
        self.block5_4 = InvertedResidual(128, 128, 1, True, 4)
        self.block5_5 = InvertedResidual(128, 128, 1, True, 4)
        self.block5_6 = InvertedResidual(128, 128, 1, True, 4)
        self.conv6_1 = InvertedResidual(128, 16, 1, False, 2)
        # Multi-scale head.
        self.conv7 = conv_bn(16, 32, 3, 2)  # 14 -> 7
        self.conv8 = nn.Conv2d(32, 128, 7, 1, 0)  # 7 -> 1, with bias
        self.bn8 = nn.BatchNorm2d(128)  # present in checkpoints, unused
        self.avg_pool1 = nn.AvgPool2d(14)
        self.avg_pool2 = nn.AvgPool2d(7)
        self.fc = nn.Linear(176, 196)
        self.fc_aux = nn.Linear(176, 3)  # present in checkpoints, unused
        # Pose branch from out1 (28x28).
        self.conv1_aux = conv_bn(64, 128, 3, 2)  # 28 -> 14
        self.conv2_aux = conv_bn(128, 128, 3, 1)  # 14
        self.conv3_aux = conv_bn(128, 32, 3, 2)  # 14 -> 7
        self.conv4_aux = conv_bn(32, 128, 7, 1)  # 7 -> 3 (padding 1)
        self.max_pool1_aux = nn.MaxPool2d(3)  # 3 -> 1
        self.fc1_aux = nn.Linear(128, 32)
        self.fc2_aux = nn.Linear(32 + 176, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: ``(N, 3, 112, 112)`` RGB in [0, 1] -> ``(pose (N, 3) rad, landmarks (N, 196) in [0, 1])``."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.conv3_1(x)
        x = self.block3_2(x)
        x = self.block3_3(x)
        x = self.block3_4(x)
        out1 = self.block3_5(x)

        x = self.conv4_1(out1)
        x = self.conv5_1(x)
        x = self.block5_2(x)
        x = self.block5_3(x)
        x = self.block5_4(x)
        x = self.block5_5(x)
        x = self.block5_6(x)
        x = self.conv6_1(x)
        x1 = torch.flatten(self.avg_pool1(x), 1)
        x = self.conv7(x)
        x2 = torch.flatten(self.avg_pool2(x), 1)
        x3 = torch.flatten(self.relu(self.conv8(x)), 1)
        multi_scale = torch.cat([x1, x2, x3], 1)
        landmarks = self.fc(multi_scale)

        a = self.conv1_aux(out1)
        a = self.conv2_aux(a)
        a = self.conv3_aux(a)
        a = self.conv4_aux(a)
        a = torch.flatten(self.max_pool1_aux(a), 1)
        a = self.fc1_aux(a)
        pose = self.fc2_aux(torch.cat([a, multi_scale], 1))
        return pose, landmarks


def build_model() -> PFPLD:
    """A freshly initialised :class:`PFPLD` (PyTorch default initialisation)."""
    return PFPLD()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (elements of ``model.parameters()``), buffers excluded."""
    return sum(p.numel() for p in model.parameters())


def pose_to_degrees(pose: torch.Tensor) -> torch.Tensor:
    """Network pose output (radians, pitch/yaw/roll) -> degrees, same order and shape."""
    return pose * (180.0 / math.pi)
