"""The variance diagnosis tool: fused reliance on each modality and the per-run table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmbench.bench.variance import describe_run, fused_reliance, run_dirs
from mmbench.data.tensor_dataset import TensorMultimodalDataset
from mmbench.models.backbones import DigitConvNetBackbone
from mmbench.models.fusion import ConcatFusion
from mmbench.models.modality import ModalitySpec
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.train import fit

SPECS = (ModalitySpec("gray", "image", (1, 28, 28)), ModalitySpec("color", "image", (3, 28, 28)))


def tiny(n: int = 40) -> tuple[MultimodalClassifier, TensorMultimodalDataset]:
    torch.manual_seed(0)
    model = MultimodalClassifier(SPECS, DigitConvNetBackbone(feature_dim=16), ConcatFusion, 10)
    data = TensorMultimodalDataset(
        {"gray": torch.randn(n, 1, 28, 28), "color": torch.randn(n, 3, 28, 28)},
        torch.randint(0, 10, (n,)),
    )
    return model, data


def test_a_silenced_modality_has_no_share_whatever_the_bias() -> None:
    model, data = tiny()
    with torch.no_grad():
        model.fusion.fc_out.weight[:, 16:] = 0.0  # the colour block of W
        model.fusion.fc_out.bias.copy_(torch.linspace(-3, 3, 10))
    reliance = fused_reliance(model, data, batch_size=16)
    assert reliance["share_gray"] == pytest.approx(1.0)
    assert reliance["share_color"] == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        features = model.encoders["gray"](data.tensors["gray"])
        gray_part = features @ model.fusion.fc_out.weight[:, :16].T + model.fusion.fc_out.bias / 2
    expected = (gray_part.argmax(1) == data.labels).double().mean().item()
    assert reliance["acc_gray"] == pytest.approx(expected)


def test_shares_follow_a_rescaled_block() -> None:
    model, data = tiny()
    base = fused_reliance(model, data)
    with torch.no_grad():
        model.fusion.fc_out.weight[:, 16:] *= 3.0  # colour logits x3: its spread x9
    scaled = fused_reliance(model, data)
    ratio = base["share_color"] / base["share_gray"]
    assert scaled["share_color"] / scaled["share_gray"] == pytest.approx(9 * ratio, rel=1e-5)


def test_describe_run_reads_a_real_run(compose_cfg, tmp_path: Path) -> None:
    overrides = [
        "strategy=uniform",
        "trainer.epochs=3",
        "trainer.limit_train_batches=3",
        "dataset.build.val_per_class=10",
        "dataset.build.test_per_class=20",
    ]
    run = tmp_path / "sweep" / "0_run"
    fit(compose_cfg(overrides), run)
    (run / ".hydra").mkdir()
    from omegaconf import OmegaConf

    OmegaConf.save(compose_cfg(overrides), run / ".hydra" / "config.yaml")
    assert run_dirs([tmp_path]) == [run]
    row = describe_run(run, {}, every=1)
    assert row["strategy"] == "uniform" and row["epochs"] == 3 and row["seed"] == 0
    assert len(row["trajectory"].split()) == 3
    assert row["best"] >= row["last"] and 1 <= row["best_epoch"] <= 3
    assert row["fused_share_gray"] + row["fused_share_color"] == pytest.approx(100.0)
    assert row["val_test_corr"] is None or -1.0 <= row["val_test_corr"] <= 1.0
