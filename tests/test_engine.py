"""End-to-end training: every strategy, determinism, resume equivalence, run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from mmbench.engine import Interrupted
from mmbench.train import fit

FAST = [
    "trainer.limit_train_batches=4",
    "trainer.telemetry_every=2",
    "trainer.epochs=2",
    "dataset.build.val_per_class=10",
    "dataset.build.test_per_class=20",
]


@pytest.mark.parametrize("strategy", ["one_joint_loss", "uniform", "mgda", "mmpareto"])
def test_tiny_training_run_per_strategy(compose_cfg, tmp_path: Path, strategy: str) -> None:
    cfg = compose_cfg([f"strategy={strategy}", *FAST])
    summary = fit(cfg, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["status"] == "completed" and saved["strategy"] == strategy
    assert set(saved["protocols"]) == {"paper", "val", "last"}
    for protocol in saved["protocols"].values():
        assert 0.0 <= protocol["acc"] <= 1.0 and 0.0 <= protocol["map"] <= 1.0
    paper, last = saved["protocols"]["paper"], saved["protocols"]["last"]
    assert paper["acc"] >= last["acc"] and last["epoch"] == 1
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [0, 1]
    assert paper["acc"] == history["test_acc"].max()
    telemetry = pd.read_csv(tmp_path / "telemetry.csv")
    assert set(telemetry["encoder"]) == {"gray", "color"}
    assert len(telemetry) == 2 * 2 * 2  # 2 epochs x 2 logged steps x 2 encoders
    assert telemetry["cos"].between(-1, 1).all() and (telemetry["cos"] < 1 - 1e-6).all()
    for enc in ("gray", "color"):
        assert saved["conflict"][enc]["steps"] == 4
    assert saved["timing"]["ms_per_step"] > 0 and saved["timing"]["samples_per_s"] > 0
    assert saved["timing"]["host_memory_kept"] is True  # trainer.keep_freed_host_memory
    assert saved["peak_memory_mb"] > 0 and summary["config_hash"] == saved["config_hash"]
    if strategy == "one_joint_loss":
        assert saved["unimodal_heads_trained"] is False
        assert paper["acc_gray"] is None and paper["acc_color"] is None
    else:
        assert isinstance(paper["acc_gray"], float)
    if strategy == "mmpareto":
        w = telemetry[["w_mm", "w_u"]]
        assert ((w.sum(axis=1) - 1).abs() < 1e-6).all()
        conflict = telemetry["cos"] <= 0
        assert (telemetry.loc[~conflict, "w_mm"] == 0.5).all()


def test_one_joint_loss_leaves_heads_untouched(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["strategy=one_joint_loss", *FAST, "trainer.epochs=1"])
    fit(cfg, tmp_path)
    trained = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    from mmbench.engine import seed_everything
    from mmbench.train import build_model

    seed_everything(0)
    initial = build_model(cfg).state_dict()
    assert torch.equal(trained["heads.gray.weight"], initial["heads.gray.weight"])
    assert not torch.equal(trained["fusion.fc_out.weight"], initial["fusion.fc_out.weight"])


def test_same_seed_same_result_other_seed_differs(compose_cfg, tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        fit(compose_cfg(["strategy=mmpareto", *FAST, f"seed={seed}"]), tmp_path / name)
        runs[name] = pd.read_csv(tmp_path / name / "history.csv").drop(columns="epoch_s")
    pd.testing.assert_frame_equal(runs["a"], runs["b"])
    assert not runs["a"]["train_loss"].equals(runs["c"]["train_loss"])


def test_data_seed_sets_the_batch_order_apart_from_the_initialisation(
    compose_cfg, tmp_path: Path
) -> None:
    """trainer.data_seed=null is the run's seed; another value reorders the batches only."""
    runs = {}
    for name, extra in (
        ("default", ["seed=0"]),
        ("same", ["seed=0", "trainer.data_seed=0"]),
        ("order", ["seed=0", "trainer.data_seed=1"]),
        ("init", ["seed=1", "trainer.data_seed=0"]),
    ):
        fit(compose_cfg(["strategy=uniform", *FAST, *extra]), tmp_path / name)
        runs[name] = pd.read_csv(tmp_path / name / "history.csv").drop(columns="epoch_s")
    pd.testing.assert_frame_equal(runs["default"], runs["same"])
    for other in ("order", "init"):
        assert not runs["default"]["train_loss"].equals(runs[other]["train_loss"])
    assert not runs["order"]["train_loss"].equals(runs["init"]["train_loss"])


def test_resume_gives_the_uninterrupted_result(compose_cfg, tmp_path: Path) -> None:
    common = ["strategy=mmpareto", *FAST, "trainer.epochs=3"]
    fit(compose_cfg(common), tmp_path / "straight")
    with pytest.raises(Interrupted):
        fit(compose_cfg([*common, "trainer.stop_after_epochs=1"]), tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    assert len(pd.read_csv(tmp_path / "resumed" / "history.csv")) == 1
    fit(compose_cfg([*common, "trainer.resume=true"]), tmp_path / "resumed")
    a, b = (
        json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("straight", "resumed")
    )
    assert a["protocols"] == b["protocols"] and a["conflict"] == b["conflict"]
    for name in ("history.csv", "telemetry.csv"):
        x, y = (pd.read_csv(tmp_path / d / name) for d in ("straight", "resumed"))
        x, y = (f.drop(columns="epoch_s", errors="ignore") for f in (x, y))
        pd.testing.assert_frame_equal(x, y)
    wa, wb = (
        torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["model"]
        for d in ("straight", "resumed")
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_another_configuration(compose_cfg, tmp_path: Path) -> None:
    with pytest.raises(Interrupted):
        fit(compose_cfg(["strategy=mmpareto", *FAST, "trainer.stop_after_epochs=1"]), tmp_path)
    with pytest.raises(RuntimeError, match="another configuration"):
        fit(compose_cfg(["strategy=uniform", *FAST, "trainer.resume=true"]), tmp_path)


def test_unknown_trainer_key_is_named(compose_cfg, tmp_path: Path) -> None:
    from mmbench.models.modality import IncompatibleConfigError

    with pytest.raises(IncompatibleConfigError, match="unknown keys \\['epoch_count'\\]"):
        fit(compose_cfg(["+trainer.epoch_count=3"]), tmp_path)


def test_eval_from_epoch_evaluates_later_epochs_only_and_protocols_choose_among_them(
    compose_cfg, tmp_path: Path
) -> None:
    """The same training (evaluation draws no randomness), evaluated from epoch 3 of 4: the
    epochs 3-4 rows equal the every-epoch run's, and the protocols choose among them."""
    common = ["strategy=mmpareto", *FAST, "trainer.epochs=4"]
    fit(compose_cfg(common), tmp_path / "every")
    fit(compose_cfg([*common, "trainer.eval_from_epoch=3"]), tmp_path / "late")
    every, late = (pd.read_csv(tmp_path / d / "history.csv") for d in ("every", "late"))
    pd.testing.assert_series_equal(every["train_loss"], late["train_loss"])
    assert late["test_acc"].isna().tolist() == [True, True, False, False]
    assert late["val_acc"].isna().tolist() == [True, True, False, False]
    tail = ["test_acc", "val_acc", "test_acc_gray"]
    pd.testing.assert_frame_equal(every.loc[2:, tail], late.loc[2:, tail])
    saved = json.loads((tmp_path / "late" / "metrics.json").read_text())["protocols"]
    assert saved["paper"]["epoch"] == int(late.loc[late["test_acc"].idxmax(), "epoch"]) >= 2
    assert saved["val"]["epoch"] >= 2 and saved["last"]["epoch"] == 3
    assert saved["last"]["acc"] == late["test_acc"].iloc[-1]


@pytest.mark.parametrize("value", [0, 5])
def test_eval_from_epoch_outside_the_run_is_refused(compose_cfg, value: int) -> None:
    from mmbench.config_checks import problems

    found = problems(compose_cfg(["trainer.epochs=4", f"trainer.eval_from_epoch={value}"]))
    assert len(found) == 1 and found[0].startswith(f"trainer.eval_from_epoch={value}")
