"""Every dataset x backbone x fusion x strategy composes; sensible ones run a step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mmbench.models.modality import IncompatibleConfigError, modality_specs
from mmbench.strategies.base import StepLosses
from mmbench.train import build_model

CONF = Path(__file__).resolve().parent.parent / "conf"


def group(name: str) -> list[str]:
    return sorted(p.stem for p in (CONF / name).glob("*.yaml"))


DATASETS, BACKBONES = group("dataset"), group("backbone")
FUSIONS, STRATEGIES = group("fusion"), group("strategy")
# The kinds each backbone encodes; any other modality kind must be refused at start.
ACCEPTS = {"convnet": {"image"}, "resnet18": {"image", "audio", "frames"},
           "resnet18_audio": {"audio"}, "resnet18_visual": {"image", "frames"}}


def test_groups_are_complete() -> None:
    assert {"cgmnist_mini", "cgmnist"} <= set(DATASETS)
    assert {"convnet", "resnet18", "resnet18_audio", "resnet18_visual"} <= set(BACKBONES)
    assert set(FUSIONS) == {"concat", "sum", "film", "gated"}
    assert {"one_joint_loss", "uniform", "mgda", "mmpareto"} <= set(STRATEGIES)
    assert set(ACCEPTS) == set(BACKBONES)


def random_batch(specs, size: int = 2) -> dict[str, torch.Tensor]:
    batch = {s.name: torch.randn(size, *s.shape) for s in specs}
    batch["label"] = torch.tensor([0, 1])
    return batch


def run_step(model, strategy, specs, num_classes: int) -> None:
    model.zero_grad(set_to_none=True)
    batch = random_batch(specs)
    out = model(batch)
    assert out.fused.shape == (2, num_classes)
    ce = torch.nn.functional.cross_entropy
    losses = StepLosses(ce(out.fused, batch["label"]),
                        {m: ce(v, batch["label"]) for m, v in out.unimodal.items()},
                        out, batch["label"])
    strategy.backward(model, losses, telemetry=True)
    for name, params in model.encoder_parameters().items():
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params), name


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_combination(compose_cfg, dataset: str, backbone: str) -> None:
    """All fusions x strategies compose; sensible models build and train a step, the rest
    are refused at start. Every strategy steps with the first fusion and every fusion with
    MMPareto (the strategy contract does not depend on the fusion)."""
    for i, fusion in enumerate(FUSIONS):
        cfgs = {s: compose_cfg([f"dataset={dataset}", f"backbone={backbone}",
                                f"fusion={fusion}", f"strategy={s}"]) for s in STRATEGIES}
        cfg = cfgs["mmpareto"]
        specs = modality_specs(cfg.dataset.modalities)
        bad = [s for s in specs if s.kind not in ACCEPTS[backbone]]
        if bad:
            with pytest.raises(IncompatibleConfigError) as error:
                build_model(cfg)
            message = str(error.value)
            assert f"backbone '{backbone}'" in message and f"'{bad[0].name}'" in message
            assert bad[0].kind in message
            continue
        model = build_model(cfg)
        for name in STRATEGIES if i == 0 else ["mmpareto"]:
            run_step(model, instantiate(cfgs[name].strategy.method), specs,
                     cfg.dataset.num_classes)


def test_fusion_keys_are_reachable(compose_cfg) -> None:
    cfg = compose_cfg(["fusion=film", "fusion.module.condition=1"])
    assert cfg.fusion.module.condition == 1
    with pytest.raises(IncompatibleConfigError, match="condition=5"):
        build_model(compose_cfg(["fusion=film", "fusion.module.condition=5"]))
