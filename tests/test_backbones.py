"""Encoders as the authors built them: PMR's CG-MNIST conv net, the official ResNet-18 init."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from mmbench.models.backbones import DigitConvNet, ResNet18Backbone, ResNet18Encoder
from mmbench.models.modality import IncompatibleConfigError, ModalitySpec


def pmr_parameter_count(c: int) -> int:
    """Modal-Imbalance-PMR models/basic_model.py convnet: bn0, conv1-4, fc 64 -> 512."""
    convs = [(c, 32, 5), (32, 32, 3), (32, 64, 3), (64, 64, 3)]
    return 2 * c + sum(i * o * k * k + o for i, o, k in convs) + 64 * 512 + 512


@pytest.mark.parametrize("channels", [1, 3])
def test_digit_convnet_is_pmrs_convnet(channels: int) -> None:
    net = DigitConvNet(channels)
    layers = list(net.features)
    assert isinstance(layers[0], nn.BatchNorm2d) and layers[0].num_features == channels
    pool = next(m for m in layers if isinstance(m, nn.MaxPool2d))
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in convs] == [
        (32, 5, 1),
        (32, 3, 1),
        (64, 3, 2),
        (64, 3, 1),
    ]
    assert sum(p.numel() for p in net.parameters()) == pmr_parameter_count(channels)
    x = torch.randn(4, channels, 28, 28)
    assert net.features[:4](x).shape[-2:] == (14, 14)  # 28 -> 14 at the max-pool
    assert net.features(x).shape[1:] == (64, 7, 7)  # PMR's AvgPool2d(7) map
    assert net(x).shape == (4, 512)


def test_convnet_width_knob_narrows_every_layer_and_is_checked_before_building(
    compose_cfg,
) -> None:
    from mmbench.config_checks import problems

    cfg = compose_cfg(["backbone.factory.width=16"])
    factory = instantiate(cfg.backbone.factory)
    net = factory.build(ModalitySpec("color", "image", (3, 28, 28)))
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [16, 16, 32, 32] and net.fc.in_features == 32
    assert net(torch.randn(2, 3, 28, 28)).shape == (2, 512)
    default = instantiate(compose_cfg([]).backbone.factory)
    pmr = default.build(ModalitySpec("gray", "image", (1, 28, 28)))
    assert sum(p.numel() for p in pmr.parameters()) == pmr_parameter_count(1)
    assert problems(compose_cfg(["backbone.factory.width=0"])) == [
        "backbone.factory.width=0: must be an integer >= 1"
    ]


def test_digit_convnet_input_batchnorm_absorbs_the_input_scale() -> None:
    """With bn0 (train mode), a per-channel affine change of the input leaves features alone."""
    torch.manual_seed(0)
    net = DigitConvNet(3).train()
    x = torch.rand(8, 3, 28, 28)
    scale, shift = torch.tensor([2.0, 0.5, 3.0]), torch.tensor([0.1, -0.4, 0.7])
    y = net(x * scale[:, None, None] + shift[:, None, None])
    assert torch.allclose(net(x), y, atol=1e-4)


def norm_weights(encoder: nn.Module) -> torch.Tensor:
    return torch.cat(
        [m.weight.detach() for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    )


def norm_biases(encoder: nn.Module) -> torch.Tensor:
    return torch.cat([m.bias.detach() for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)])


def test_resnet18_official_init_draws_bn_weights_from_n_1_002() -> None:
    """MMPareto_ICML2024 code/models/backbone.py: BN weight ~ N(1, 0.02), bias 0."""
    torch.manual_seed(0)
    official = ResNet18Encoder(1, multi_frame=False, init="official")
    weights = norm_weights(official)
    assert len(weights) == 4800  # every BN of the trunk, downsample BNs included
    assert weights.mean().item() == pytest.approx(1.0, abs=0.002)
    assert weights.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.all(norm_biases(official) == 0)
    for conv in (m for m in official.modules() if isinstance(m, nn.Conv2d)):
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.25)
    torchvision = ResNet18Encoder(1, multi_frame=False)
    assert torch.all(norm_weights(torchvision) == 1)


def test_resnet18_factory_passes_the_init_to_every_encoder() -> None:
    factory = ResNet18Backbone(init="official")
    for spec in (
        ModalitySpec("audio", "audio", (1, 64, 64)),
        ModalitySpec("visual", "frames", (2, 3, 32, 32)),
    ):
        assert not torch.all(norm_weights(factory.build(spec)) == 1)
    with pytest.raises(IncompatibleConfigError, match="backbone.factory.init='kaiming'"):
        ResNet18Backbone(init="kaiming")


@pytest.mark.parametrize(
    "experiment", ["paper_cremad", "paper_kinetics_sounds", "paper_modelnet40"]
)
def test_paper_presets_use_the_official_resnet_init(compose_cfg, experiment: str) -> None:
    cfg = compose_cfg([f"experiment={experiment}"])
    assert instantiate(cfg.backbone.factory).init == "official"
    assert compose_cfg(["backbone=resnet18"]).backbone.factory.init == "torchvision"
