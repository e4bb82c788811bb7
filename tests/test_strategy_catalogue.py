"""The whole strategy catalogue: every config trains, every fusion steps, resume is exact,
the per-encoder adaptor is the pure aggregator, and the MMPareto pitfalls cannot occur."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import make_conflicting, step_losses, tiny_batch, tiny_model
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmbench.data.cgmnist import build_mini
from mmbench.data.tensor_dataset import DatasetSplits
from mmbench.engine import Interrupted
from mmbench.models.backbones import DigitConvNetBackbone
from mmbench.models.fusion import ConcatFusion, FiLMFusion, GatedFusion, SumFusion
from mmbench.models.modality import ModalitySpec
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies import pcgrad, upgrad
from mmbench.strategies.aggregated import PerEncoderAggregation
from mmbench.strategies.base import StepLosses
from mmbench.strategies.mmpareto import MMPareto
from mmbench.strategies.uniform import Uniform
from mmbench.train import fit

CONF = Path(__file__).resolve().parent.parent / "conf"
STRATEGIES = sorted(p.stem for p in (CONF / "strategy").glob("*.yaml"))
FUSIONS = {"concat": ConcatFusion, "sum": SumFusion, "film": FiLMFusion, "gated": GatedFusion}


@functools.cache
def cached_mini(**kwargs: float) -> DatasetSplits:
    """build_mini once per setting for the whole file (the splits are never modified)."""
    return build_mini(**kwargs)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread (small steps on shared cores run faster), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = [
    "trainer.limit_train_batches=1",
    "trainer.batch_size=8",
    "trainer.num_threads=1",
    "trainer.telemetry_every=1",
    "trainer.eval_batch_size=512",
    "dataset.build.val_per_class=2",
    "dataset.build.test_per_class=4",
    f"dataset.build._target_={__name__}.cached_mini",
]


def test_catalogue_is_complete() -> None:
    expected = {
        "pcgrad",
        "cagrad",
        "gradvac",
        "imtl_g",
        "aligned_mtl",
        "nash_mtl",
        "upgrad",
        "dualproj",
        "config",
        "mgda_l2",
        "mgda_loss",
        "mgda_lossplus",
        "ogm_ge",
        "agm",
        "uncertainty",
        "dwa",
        "rlw",
        "one_joint_loss",
        "uniform",
        "mgda",
        "mmpareto",
    }
    assert expected <= set(STRATEGIES)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_one_epoch(compose_cfg, tmp_path: Path, strategy: str) -> None:
    summary = fit(compose_cfg([f"strategy={strategy}", "trainer.epochs=1", *TINY]), tmp_path)
    assert summary["status"] == "completed"
    history = pd.read_csv(tmp_path / "history.csv")
    assert history.drop(columns="lr").notna().all().all()
    assert torch.isfinite(torch.tensor(history["train_loss"].to_numpy())).all()
    telemetry = pd.read_csv(tmp_path / "telemetry.csv")
    assert set(telemetry["encoder"]) == {"gray", "color"} and len(telemetry) == 2
    numbers = telemetry[["cos", "norm_mm", "norm_u", "w_mm", "w_u"]]
    assert numbers.notna().all().all() and telemetry["cos"].between(-1, 1).all()


def specs(k: int) -> list[ModalitySpec]:
    return [ModalitySpec(f"m{i}", "image", ((1, 3)[i % 2], 8, 8)) for i in range(k)]


def losses_for(model: MultimodalClassifier, batch: dict[str, torch.Tensor]) -> StepLosses:
    losses = step_losses(model, batch)
    losses.batch = batch
    return losses


def strategy_method(name: str, modalities: list[str]) -> DictConfig:
    """conf/strategy/<name>.yaml's ``method`` with ${seed} and ${dataset.modalities} set
    (cheaper than a full Hydra composition per strategy)."""
    root = OmegaConf.create(
        {"seed": 0, "dataset": {"modalities": [{"name": m} for m in modalities]}}
    )
    root.strategy = OmegaConf.load(CONF / "strategy" / f"{name}.yaml")
    return root.strategy.method


@pytest.mark.parametrize("k", [2, 3])
def test_every_strategy_steps_with_every_fusion(k: int) -> None:
    """Direct steps on a tiny model: every config x fusion, 2 and 3 modalities."""
    names = [s.name for s in specs(k)]
    cfgs = {s: strategy_method(s, names) for s in STRATEGIES}
    gen = torch.Generator().manual_seed(k)
    batch = {s.name: torch.randn(6, *s.shape, generator=gen) for s in specs(k)}
    batch["label"] = torch.randint(0, 4, (6,), generator=gen)
    for fusion in FUSIONS.values():
        torch.manual_seed(0)
        base = MultimodalClassifier(specs(k), DigitConvNetBackbone(feature_dim=8), fusion, 4)
        for name, method in cfgs.items():
            strategy = instantiate(method)
            model = copy.deepcopy(base)
            rows = strategy.backward(model, losses_for(model, batch), telemetry=True)
            assert set(rows) == set(names), name
            for row in rows.values():
                assert all(v == v for v in row.values()), (name, row)  # no NaN
            trained = [*model.encoders.parameters(), *model.fusion.parameters()]
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained)
            assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


# ------------------------------------------------------------------ exact resume
def same(a: object, b: object) -> bool:
    """Exact equality of nested dicts/lists/tuples of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(
    "strategy,epochs",
    [
        ("gradvac", 2),
        ("pcgrad", 2),
        ("rlw", 2),
        ("uncertainty", 2),
        ("ogm_ge", 2),
        ("dwa", 3),
        ("agm", 2),
    ],
)
def test_resume_is_exact(compose_cfg, tmp_path: Path, strategy: str, epochs: int) -> None:
    common = [f"strategy={strategy}", f"trainer.epochs={epochs}", *TINY]
    fit(compose_cfg(common), tmp_path / "straight")
    with pytest.raises(Interrupted):
        fit(compose_cfg([*common, "trainer.stop_after_epochs=1"]), tmp_path / "resumed")
    fit(compose_cfg([*common, "trainer.resume=true"]), tmp_path / "resumed")
    a, b = (
        json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("straight", "resumed")
    )
    assert a["protocols"] == b["protocols"]
    for name in ("history.csv", "telemetry.csv"):
        x, y = (pd.read_csv(tmp_path / d / name) for d in ("straight", "resumed"))
        x, y = (f.drop(columns="epoch_s", errors="ignore") for f in (x, y))
        pd.testing.assert_frame_equal(x, y)
    sa, sb = (
        torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)
        for d in ("straight", "resumed")
    )
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    assert same(sa["strategy"], sb["strategy"])
    if strategy == "dwa":  # weights 1 for two epochs, then K softmax(ratios / T)
        early, late = x[x.epoch < 2], x[x.epoch == 2]
        assert (early[["w_mm", "w_u"]] == 1.0).all().all()
        assert (late[["w_mm", "w_u"]] != 1.0).any().any()
        assert late["w_mm"].iloc[0] + late["w_u"].sum() == pytest.approx(3.0)


# ------------------------------------------------------------------ adaptor = aggregator
def flat_encoder_grads(model: MultimodalClassifier, name: str) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.encoder_parameters()[name]])


def separate(model: MultimodalClassifier, batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """flat g_mm and g_u of one encoder, each from its own fresh forward and backward."""
    params = model.encoder_parameters()[name]
    out = model(batch)
    ce = torch.nn.functional.cross_entropy
    g_mm = torch.autograd.grad(ce(out.fused, batch["label"]), params)
    out = model(batch)
    g_u = torch.autograd.grad(ce(out.unimodal[name], batch["label"]), params)
    return torch.cat([g.reshape(-1) for g in g_mm]), torch.cat([g.reshape(-1) for g in g_u])


@pytest.mark.parametrize(
    "aggregator,reference",
    [
        ("upgrad", lambda G: upgrad.aggregate(G)),
        ("pcgrad", lambda G: pcgrad.aggregate(G, generator=torch.Generator().manual_seed(0))),
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_adaptor_is_the_pure_aggregate(aggregator: str, reference, channels_last: bool) -> None:
    batch = tiny_batch(3)
    model = tiny_model(1)
    make_conflicting(model)
    if channels_last:  # as the engine trains by default: G holds 4-D tensors in NHWC order
        model = model.to(memory_format=torch.channels_last)
    expected = {m: reference(torch.stack(separate(model, batch, m))) for m in model.modality_names}
    plain = copy.deepcopy(model)
    Uniform().backward(plain, step_losses(plain, batch))
    strategy = PerEncoderAggregation(aggregator=aggregator, seed=0)
    rows = strategy.backward(model, step_losses(model, batch), telemetry=True)
    for m in model.modality_names:
        torch.testing.assert_close(flat_encoder_grads(model, m), expected[m].direction)
        assert rows[m]["w_mm"] == pytest.approx(float(expected[m].weights[0]), rel=1e-5)
        assert rows[m]["w_u"] == pytest.approx(float(expected[m].weights[1]), rel=1e-5)
    encoder_ids = {id(p) for ps in model.encoder_parameters().values() for p in ps}
    for (key, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        if id(p) not in encoder_ids:
            torch.testing.assert_close(p.grad, q.grad, msg=key)


# ------------------------------------------------------------------ spec/mmpareto.md pitfalls
def conflicting_unequal() -> tuple[MultimodalClassifier, dict[str, torch.Tensor]]:
    """Conflicting gradients (fused head = minus the unimodal heads, x3: unequal norms)."""
    model = tiny_model(2)
    make_conflicting(model)
    with torch.no_grad():
        model.fusion.fc_out.weight.mul_(3.0)
    return model, tiny_batch(5)


def hand_min_norm(x1: torch.Tensor, x2: torch.Tensor) -> float:
    """argmin_{w in [0, 1]} ||w x1 + (1 - w) x2||² by hand."""
    w = float((x2 @ (x2 - x1)) / ((x1 - x2) @ (x1 - x2)))
    return min(max(w, 0.0), 1.0)


@pytest.mark.parametrize(
    "make,scale",
    [
        (lambda: MMPareto(rescale="none", gamma=1.0), 2.0),  # d = 2 (w_mm g_mm + w_u g_u)
        (lambda: PerEncoderAggregation(aggregator="mgda_k"), 1.0),
    ],
)
def test_separate_gradients_and_weights_are_not_swapped(make, scale: float) -> None:
    model, batch = conflicting_unequal()
    hand = {m: separate(model, batch, m) for m in model.modality_names}
    rows = make().backward(model, step_losses(model, batch), telemetry=True)
    for m, (x1, x2) in hand.items():
        assert rows[m]["cos"] < 0  # not the accumulated sum (whose cosine with itself is 1)
        assert rows[m]["cos"] == pytest.approx(
            float(torch.nn.functional.cosine_similarity(x1, x2, dim=0)), abs=1e-5
        )
        assert rows[m]["norm_mm"] == pytest.approx(float(x1.norm()), rel=1e-5)
        assert rows[m]["norm_u"] == pytest.approx(float(x2.norm()), rel=1e-5)
        assert abs(float(x1.norm() / x2.norm()) - 1) > 0.2  # unequal norms
        w = hand_min_norm(x1, x2)
        assert 0.05 < w < 0.95 and abs(w - 0.5) > 0.02
        assert rows[m]["w_mm"] == pytest.approx(w, abs=1e-4)
        assert rows[m]["w_u"] == pytest.approx(1 - w, abs=1e-4)
        torch.testing.assert_close(
            flat_encoder_grads(model, m), scale * (w * x1 + (1 - w) * x2), rtol=1e-4, atol=1e-6
        )
