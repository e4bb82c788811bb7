"""Encoders, and the backbone factories that build one encoder per modality.

A backbone config instantiates a factory; ``factory.build(modality)`` returns an
``nn.Module`` mapping a batch of that modality to pooled features of size
``factory.feature_dim``. A factory refuses modality kinds it was not made for.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmbench.models.input_norm_conv import input_norm_conv
from mmbench.models.modality import IncompatibleConfigError, ModalitySpec


class DigitConvNet(nn.Module):
    """PMR's CG-MNIST encoder (Modal-Imbalance-PMR ``models/basic_model.py``, ``convnet``).

    BatchNorm on the input (bn0), conv5x5-32, ReLU, max-pool 3 stride 2 pad 1 (28 -> 14),
    conv3x3-32, ReLU, conv3x3-64 stride 2 (14 -> 7), ReLU, conv3x3-64, ReLU, global average
    pool (PMR's AvgPool2d(7) on its 7x7 map), linear 64 -> ``feature_dim`` (512 in PMR).
    PyTorch's default initialisation, as PMR. ``width`` (32 in PMR) scales the channels to
    width, width, 2 width, 2 width: not PMR's net unless 32.

    ``forward`` computes the same function as ``features`` in order, faster on CPU: the
    max-pool before the first ReLU (max and ReLU commute, so values and gradients are the
    same, on a map a quarter the size), and with ``fused_input_grad`` bn0 and conv1 through
    ``input_norm_conv`` (no gradient for the data input; mmbench/models/input_norm_conv.py).
    """

    def __init__(
        self,
        in_channels: int,
        feature_dim: int = 512,
        width: int = 32,
        fused_input_grad: bool = True,
    ) -> None:
        super().__init__()
        self.fused_input_grad = fused_input_grad
        wide = 2 * width
        self.features = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, width, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, wide, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(wide, wide, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(wide, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn0, conv1, relu1, pool, *rest = self.features
        h = input_norm_conv(x, bn0, conv1) if self.fused_input_grad else conv1(bn0(x))
        h = relu1(pool(h))
        for layer in rest:
            h = layer(h)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


RESNET_INITS = ("torchvision", "official")


def check_init(init: str) -> None:
    """Refuse an unknown ``backbone.factory.init``, naming the choices."""
    if init not in RESNET_INITS:
        raise IncompatibleConfigError(
            f"backbone.factory.init={init!r}: use one of {list(RESNET_INITS)} "
            "(official: the MMPareto/OGM-GE models/backbone.py init)"
        )


def official_init(module: nn.Module) -> None:
    """The MMPareto / OGM-GE ResNet init (``models/backbone.py``, ``ResNet.__init__``).

    Conv2d: kaiming_normal_(fan_out, relu); BatchNorm2d / GroupNorm: weight ~ N(1, 0.02),
    bias = 0. torchvision differs only in the norm weights, which it sets to 1.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, mean=1.0, std=0.02)
            nn.init.constant_(m.bias, 0.0)


class ResNet18Encoder(nn.Module):
    """ResNet-18 trunk from scratch (torchvision layout, no fc), OGM-GE style pooling.

    ``image``/``audio``: (B, C, H, W) -> trunk -> global average pool -> (B, 512).
    ``frames``: (B, T, 3, H, W) -> every frame through the trunk -> (B, 512, T, h, w)
    -> 3-D global average pool -> (B, 512), as OGM-GE/MMPareto pool their visual stream.
    ``init``: ``torchvision`` (BN weights 1) or ``official`` (``official_init``).
    """

    feature_dim = 512

    def __init__(self, in_channels: int, multi_frame: bool, init: str = "torchvision") -> None:
        super().__init__()
        check_init(init)
        # imported here: torchvision takes ~1.2 s to import, which every sweep worker of the
        # digit benchmark (no ResNet) would otherwise pay
        from torchvision.models import resnet18

        trunk = resnet18(weights=None)
        if in_channels != 3:
            trunk.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(trunk.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.trunk = nn.Sequential(
            trunk.conv1,
            trunk.bn1,
            trunk.relu,
            trunk.maxpool,
            trunk.layer1,
            trunk.layer2,
            trunk.layer3,
            trunk.layer4,
        )
        if init == "official":
            official_init(self.trunk)
        self.multi_frame = multi_frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.multi_frame:
            return torch.flatten(F.adaptive_avg_pool2d(self.trunk(x), 1), 1)
        batch, frames = x.shape[:2]
        maps = self.trunk(x.flatten(0, 1))
        maps = maps.view(batch, frames, *maps.shape[1:]).transpose(1, 2)
        return torch.flatten(F.adaptive_avg_pool3d(maps, 1), 1)


class BackboneFactory:
    """Builds one encoder per modality; refuses modality kinds it does not accept."""

    name = "backbone"
    accepts: tuple[str, ...] = ()
    suggestion = ""

    def __init__(
        self, feature_dim: int = 512, accepts: Sequence[str] | None = None, name: str | None = None
    ) -> None:
        self.feature_dim = feature_dim
        if accepts is not None:
            self.accepts = tuple(accepts)
        if name is not None:
            self.name = name

    def check(self, modality: ModalitySpec) -> None:
        """Raise ``IncompatibleConfigError`` saying why this backbone cannot encode it."""
        if modality.kind not in self.accepts:
            raise IncompatibleConfigError(
                f"backbone '{self.name}' encodes modality kinds {list(self.accepts)}, but "
                f"modality '{modality.name}' is of kind '{modality.kind}' "
                f"(shape {list(modality.shape)}). {self.suggestion}"
            )

    def build(self, modality: ModalitySpec) -> nn.Module:
        self.check(modality)
        return self._build(modality)

    def _build(self, modality: ModalitySpec) -> nn.Module:
        raise NotImplementedError


class DigitConvNetBackbone(BackboneFactory):
    """PMR's CG-MNIST conv net (``DigitConvNet``), for single images (any channel count);
    ``width`` other than 32 narrows or widens it."""

    name = "convnet"
    accepts = ("image",)
    suggestion = "Use backbone=resnet18 for audio spectrograms and multi-frame video."

    def __init__(
        self,
        feature_dim: int = 512,
        accepts: Sequence[str] | None = None,
        name: str | None = None,
        width: int = 32,
        fused_input_grad: bool = True,
    ) -> None:
        super().__init__(feature_dim, accepts, name)
        self.width = width
        self.fused_input_grad = fused_input_grad

    def _build(self, modality: ModalitySpec) -> nn.Module:
        return DigitConvNet(modality.shape[0], self.feature_dim, self.width, self.fused_input_grad)


class ResNet18Backbone(BackboneFactory):
    """ResNet-18 from scratch: 1-channel audio, 3-channel multi-frame visual, or images.

    ``init``: ``torchvision`` (BN weights 1) or ``official`` (BN weights ~ N(1, 0.02), the
    MMPareto / OGM-GE ``models/backbone.py``).
    """

    name = "resnet18"
    accepts = ("audio", "frames", "image")
    suggestion = "Use backbone=resnet18 (all kinds) or a backbone made for that kind."

    def __init__(
        self,
        feature_dim: int = 512,
        accepts: Sequence[str] | None = None,
        name: str | None = None,
        init: str = "torchvision",
    ) -> None:
        if feature_dim != ResNet18Encoder.feature_dim:
            raise IncompatibleConfigError(
                f"backbone.feature_dim={feature_dim}: ResNet-18 yields 512-d features; "
                "set backbone.feature_dim=512"
            )
        check_init(init)
        super().__init__(feature_dim, accepts, name)
        self.init = init

    def _build(self, modality: ModalitySpec) -> nn.Module:
        if modality.kind == "frames":
            if modality.shape[1] != 3:
                raise IncompatibleConfigError(
                    f"modality '{modality.name}': frames must have 3 channels as (T, 3, H, W), "
                    f"got shape {list(modality.shape)}"
                )
            return ResNet18Encoder(3, multi_frame=True, init=self.init)
        return ResNet18Encoder(modality.shape[0], multi_frame=False, init=self.init)
