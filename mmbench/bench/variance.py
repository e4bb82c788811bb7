"""Where the seed-to-seed variance of a sweep comes from: trajectories and fused reliance.

``python -m mmbench.bench.variance SWEEP_DIR... [--out runs.csv]`` reads every run directory
(``metrics.json``, ``history.csv``, ``checkpoint.pt``, ``.hydra/config.yaml``) and prints one
row per run: its axes (strategy, lr, epochs, seed, data seed), the test accuracy of the fused
head at every ``--every``-th epoch, its last and best value, and how much the trained fused
head relies on each modality on the test split (:func:`fused_reliance`). The numbers of
docs/variance.md were produced with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmbench.engine import make_loader
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.run_integrity import load_checkpoint, read_metrics


@torch.no_grad()
def fused_reliance(
    model: MultimodalClassifier, dataset: Any, batch_size: int = 256
) -> dict[str, float]:
    """Per modality m, from the fusion's additive split of the logits l = sum_m l_m:

    ``share_m`` = E_x[Var_c(l_m(x) - E_x' l_m(x'))] / sum_k (the same for k): the part of the
    input-dependent spread of the logits over classes that m contributes (constants such as
    the bias cancel; 1: the fused decision varies with m alone), and ``acc_m`` = accuracy of
    argmax_c l_m(x), the fused head read through m's part only. Needs a fusion with
    ``modality_logits`` (concat, sum).
    """
    model.eval()
    names = model.modality_names
    parts: dict[str, list[torch.Tensor]] = {m: [] for m in names}
    labels = []
    loader = make_loader(
        dataset, batch_size, shuffle=False, seed=0, num_workers=0, pin_memory=False
    )
    for batch in loader:
        features = [model.encoders[m](batch[m]) for m in names]
        for m, logits in zip(names, model.fusion.modality_logits(features), strict=True):
            parts[m].append(logits.double())
        labels.append(batch["label"])
    y = torch.cat(labels)
    logits = {m: torch.cat(chunks) for m, chunks in parts.items()}
    spread = {m: float((v - v.mean(0)).var(dim=1).mean()) for m, v in logits.items()}
    whole = sum(spread.values()) or 1.0
    out = {f"share_{m}": spread[m] / whole for m in names}
    out.update({f"acc_{m}": float((logits[m].argmax(1) == y).double().mean()) for m in names})
    return out


def run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every directory under ``roots`` holding a completed run's ``metrics.json``."""
    found = []
    for root in roots:
        for path in sorted(Path(root).rglob("metrics.json")):
            metrics = read_metrics(path)  # names the file if it is corrupt
            if metrics is not None and metrics.get("status") == "completed":
                found.append(path.parent)
    return found


def describe_run(run_dir: Path, datasets: dict[str, Any], every: int = 3) -> dict[str, Any]:
    """One run's axes, test-accuracy trajectory (percent) and final fused reliance."""
    from mmbench.train import build_model

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    history = pd.read_csv(run_dir / "history.csv")
    history = history.dropna(subset=["test_acc"]).reset_index(drop=True)  # evaluated epochs
    acc = 100 * history["test_acc"].to_numpy()
    row: dict[str, Any] = {
        "run": run_dir.name,
        "strategy": cfg.strategy.name,
        "lr": float(cfg.optim.optimizer.lr),
        "epochs": int(cfg.trainer.epochs),
        "seed": int(cfg.seed),
        "data_seed": cfg.trainer.get("data_seed"),
        "last": float(acc[-1]),
        "best": float(acc.max()),
        "best_epoch": int(history["epoch"].iloc[acc.argmax()]) + 1,
        "mean_last_third": float(acc[-max(1, len(acc) // 3) :].mean()),
        "trajectory": " ".join(f"{a:.0f}" for a in acc[every - 1 :: every]),
    }
    if "val_acc" in history and history["val_acc"].notna().all():
        val = 100 * history["val_acc"].to_numpy()
        row["val_best"] = float(val.max())
        row["test_at_val_best"] = float(acc[val.argmax()])
        varies = len(acc) > 2 and val.std() > 0 and acc.std() > 0
        row["val_test_corr"] = float(np.corrcoef(val, acc)[0, 1]) if varies else None
    for m in cfg.dataset.modalities:
        column = f"test_acc_{m.name}"
        if column in history:
            row[f"head_{m.name}"] = float(100 * history[column].iloc[-1])
    key = OmegaConf.to_yaml(cfg.dataset.build)
    if key not in datasets:
        datasets[key] = instantiate(cfg.dataset.build)
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt", "cpu")["model"])
    if hasattr(model.fusion, "modality_logits"):
        reliance = fused_reliance(model, datasets[key].test)
        row.update({f"fused_{k}": 100 * v for k, v in reliance.items()})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmbench.bench.variance", description=__doc__)
    parser.add_argument("roots", nargs="+", type=Path, help="sweep or run directories")
    parser.add_argument("--every", type=int, default=3, help="trajectory: every N-th epoch")
    parser.add_argument("--out", type=Path, help="also write the table as CSV")
    args = parser.parse_args(argv)
    dirs = run_dirs(args.roots)
    if not dirs:
        parser.error(f"no completed run (metrics.json) under {[str(r) for r in args.roots]}")
    torch.set_num_threads(1)
    datasets: dict[str, Any] = {}
    frame = pd.DataFrame([describe_run(d, datasets, args.every) for d in dirs])
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        shown = frame.drop(columns="run")
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        numeric = [c for c in ("last", "best", "mean_last_third", "test_at_val_best") if c in frame]
        groups = [c for c in ("strategy", "lr", "epochs") if frame[c].nunique() > 1] or ["strategy"]
        print(frame.groupby(groups)[numeric].agg(["mean", "std"]).round(2).to_string())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
