"""Every dataset x backbone x fusion x strategy composes; sensible ones build and train a
step, the rest are refused at start with a message that says why.

The default run covers every (dataset, backbone, fusion) triple, every strategy with every
fusion and every strategy on every dataset; the full product is the ``slow`` test.
Inputs are shrunk spatially (the encoders pool globally), so steps stay cheap.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from mmbench.models.modality import IncompatibleConfigError, ModalitySpec, modality_specs
from mmbench.strategies.base import StepLosses
from mmbench.train import build_model

CONF = Path(__file__).resolve().parent.parent / "conf"


def group(name: str) -> list[str]:
    return sorted(p.stem for p in (CONF / name).glob("*.yaml"))


DATASETS, BACKBONES = group("dataset"), group("backbone")
FUSIONS, STRATEGIES = group("fusion"), group("strategy")
# The kinds each backbone encodes; any other modality kind must be refused at start.
ACCEPTS = {
    "convnet": {"image"},
    "resnet18": {"image", "audio", "frames"},
    "resnet18_audio": {"audio"},
    "resnet18_visual": {"image", "frames"},
}


@pytest.fixture(scope="module")
def configs():
    """compose(dataset, backbone, fusion, strategy) inside one Hydra initialisation."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):

        def _compose(
            dataset: str, backbone: str, fusion: str, strategy: str, *extra: str
        ) -> DictConfig:
            return compose(
                config_name="train",
                overrides=[
                    f"dataset={dataset}",
                    f"backbone={backbone}",
                    f"fusion={fusion}",
                    f"strategy={strategy}",
                    *extra,
                ],
            )

        yield _compose


def small_shape(spec: ModalitySpec) -> tuple[int, ...]:
    """The declared shape with the two spatial dims cut to at most 16."""
    return (*spec.shape[:-2], *(min(d, 16) for d in spec.shape[-2:]))


def step(model, strategy, specs, num_classes: int) -> None:
    model.zero_grad(set_to_none=True)
    batch = {s.name: torch.randn(2, *small_shape(s)) for s in specs}
    batch["label"] = torch.tensor([0, 1])
    out = model(batch)
    assert out.fused.shape == (2, num_classes)
    strategy.backward(model, StepLosses.from_outputs(out, batch), telemetry=True)
    for name, params in model.encoder_parameters().items():
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params), name


def compatible(cfg: DictConfig, backbone: str) -> bool:
    """Build the model; assert a refusal names the backbone, modality and kind."""
    specs = modality_specs(cfg.dataset.modalities)
    bad = [s for s in specs if s.kind not in ACCEPTS[backbone]]
    if not bad:
        return True
    with pytest.raises(IncompatibleConfigError) as error:
        build_model(cfg)
    message = str(error.value)
    assert f"backbone '{backbone}'" in message and f"'{bad[0].name}'" in message
    assert bad[0].kind in message
    return False


def test_groups_are_complete() -> None:
    assert {"cgmnist_mini", "cgmnist", "cremad", "kinetics_sounds", "modelnet40"} <= set(DATASETS)
    assert {"convnet", "resnet18", "resnet18_audio", "resnet18_visual"} <= set(BACKBONES)
    assert set(FUSIONS) == {"concat", "sum", "film", "gated"}
    assert {"one_joint_loss", "uniform", "mgda", "mmpareto"} <= set(STRATEGIES)
    assert set(ACCEPTS) == set(BACKBONES)


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_backbone_fusion(configs, dataset: str) -> None:
    for backbone, fusion in itertools.product(BACKBONES, FUSIONS):
        cfg = configs(dataset, backbone, fusion, "mmpareto")
        if compatible(cfg, backbone):
            step(
                build_model(cfg),
                instantiate(cfg.strategy.method),
                modality_specs(cfg.dataset.modalities),
                cfg.dataset.num_classes,
            )


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_strategy_with_every_fusion(configs, fusion: str) -> None:
    model = None
    for strategy in STRATEGIES:
        cfg = configs("cgmnist_mini", "convnet", fusion, strategy)
        model = build_model(cfg) if model is None else model
        step(
            model,
            instantiate(cfg.strategy.method),
            modality_specs(cfg.dataset.modalities),
            cfg.dataset.num_classes,
        )


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_strategy_on_every_dataset(configs, dataset: str) -> None:
    model = None
    for strategy in STRATEGIES:
        cfg = configs(dataset, "resnet18", "concat", strategy)
        model = build_model(cfg) if model is None else model
        step(
            model,
            instantiate(cfg.strategy.method),
            modality_specs(cfg.dataset.modalities),
            cfg.dataset.num_classes,
        )


@pytest.mark.slow
def test_full_product_composes(configs) -> None:
    for dataset, backbone, fusion, strategy in itertools.product(
        DATASETS, BACKBONES, FUSIONS, STRATEGIES
    ):
        cfg = configs(dataset, backbone, fusion, strategy)
        specs = modality_specs(cfg.dataset.modalities)
        assert all(s.kind in ACCEPTS[backbone] for s in specs) == compatible(cfg, backbone)
        instantiate(cfg.strategy.method)


def test_fusion_keys_are_reachable(configs) -> None:
    cfg = configs("cgmnist_mini", "convnet", "film", "mmpareto", "fusion.module.condition=1")
    assert cfg.fusion.module.condition == 1
    with pytest.raises(IncompatibleConfigError, match="condition=5"):
        build_model(
            configs("cgmnist_mini", "convnet", "film", "mmpareto", "fusion.module.condition=5")
        )
