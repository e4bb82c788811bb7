"""How close representation-level MMPareto is to exact MMPareto, measured in training.

Trains the bench model (experiment=bench: cgmnist_mini, the digit conv-net pair, concat
fusion, SGD lr 0.01, batch 32; 64 before 2026-12-05) with exact MMPareto
(strategy=mmpareto) for ``--steps`` steps. On every step, on the same batch and
parameters, it also computes what strategy=mmpareto_rep would do (its decisions on dL/dz_m
and its encoder update J_m^T v_m, one extra backward that is not applied), then applies the
exact step. Per encoder:

- decision agreement: how often both levels make the same conflict decision (cos > 0 or not);
- cos(update): cosine between the exact and the representation-level encoder update
  (1 exactly when neither level sees a conflict), over all steps and over the steps where
  at least one level sees a conflict;
- norm ratio: ||representation update|| / ||exact update||.

For the adaptive mode (mmpareto_rep ``exact_below`` = tau: exact step when some encoder's
representation cosine is <= tau), it reports per tau the share of exact steps and the share
of steps whose update differs from exact MMPareto (representation step taken while the
exact test sees a conflict). Writes ``approximation.csv`` (per encoder),
``approximation_steps.csv`` (per step and encoder) and ``approximation.md``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from mmbench.engine import epoch_seed, make_loader, resolve_device, seed_everything, to_device
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import StepLosses
from mmbench.strategies.mmpareto import MMPareto
from mmbench.strategies.mmpareto_rep import MMParetoRep
from mmbench.strategies.representation import representation_gradients
from mmbench.train import build_model

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
BASE_OVERRIDES = ["experiment=bench", "strategy=mmpareto"]
TAUS = (0.0, 0.05, 0.1, 0.2)


def bench_config(overrides: list[str]) -> DictConfig:
    """experiment=bench with strategy=mmpareto and the caller's Hydra overrides."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[*BASE_OVERRIDES, *overrides])


def flat_cos_and_ratio(
    approx: list[torch.Tensor], exact: list[torch.Tensor]
) -> tuple[float, float]:
    """cos(approx, exact) and ||approx|| / ||exact|| over one encoder's tensors."""
    dot = sum(torch.sum(a * e) for a, e in zip(approx, exact, strict=True))
    na = torch.sqrt(sum(torch.sum(a * a) for a in approx))
    ne = torch.sqrt(sum(torch.sum(e * e) for e in exact))
    cos = float(dot / (na * ne).clamp_min(1e-30))
    return cos, float(na / ne.clamp_min(1e-30))


def measure_step(
    model: MultimodalClassifier, losses: StepLosses, exact: MMPareto, fast: MMParetoRep
) -> list[dict[str, Any]]:
    """Both updates on this step's graph; leaves the exact one in ``.grad``."""
    rep = representation_gradients(model, losses)
    encoders = model.encoder_parameters()
    names = list(rep.features)
    updates, rep_stats = {}, {}
    for m in names:
        updates[m], rep_stats[m] = fast.combine_representation(rep.fused[m], rep.unimodal[m], m)
    params = [p for m in names for p in encoders[m]]
    approx = torch.autograd.grad(
        [rep.features[m] for m in names],
        params,
        grad_outputs=[updates[m].to(rep.features[m].dtype) for m in names],
        retain_graph=True,
    )
    rows = exact.backward(model, losses, telemetry=True)
    out, start = [], 0
    for m in names:
        count = len(encoders[m])
        cos, ratio = flat_cos_and_ratio(
            [a.float() for a in approx[start : start + count]],
            [p.grad.float() for p in encoders[m]],
        )
        start += count
        out.append(
            {
                "encoder": m,
                "cos_exact": rows[m]["cos"],
                "cos_rep": float(rep_stats[m].cos),
                "w_mm_exact": rows[m]["w_mm"],
                "w_mm_rep": float(rep_stats[m].w_mm),
                "update_cos": cos,
                "norm_ratio": ratio,
            }
        )
    return out


def run(cfg: DictConfig, steps: int, device: torch.device) -> list[dict[str, Any]]:
    """``steps`` steps of exact MMPareto training with the side-by-side measurement."""
    seed = int(cfg.seed)
    seed_everything(seed)
    model = build_model(cfg).to(device)
    channels_last = bool(cfg.trainer.channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    method = cfg.strategy.method
    exact = MMPareto(gamma=method.gamma, rescale=method.rescale, eps=method.eps)
    fast = MMParetoRep(gamma=method.gamma, eps=method.eps)
    optimizer = instantiate(cfg.optim.optimizer)(params=model.parameters())
    splits = instantiate(cfg.dataset.build)
    batch_size = int(cfg.trainer.batch_size)
    records: list[dict[str, Any]] = []
    step, epoch = 0, 0
    model.train()
    while step < steps:
        torch.manual_seed(epoch_seed(seed, epoch))
        loader = make_loader(splits.train, batch_size, True, epoch_seed(seed, epoch), 0, False)
        for batch in loader:
            if step >= steps:
                break
            batch = to_device(batch, device, channels_last)
            optimizer.zero_grad(set_to_none=True)
            losses = StepLosses.from_outputs(model(batch), batch, epoch)
            for row in measure_step(model, losses, exact, fast):
                records.append({"step": step, "epoch": epoch, **row})
            optimizer.step()
            step += 1
        epoch += 1
    return records


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (linear interpolation between order statistics)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per encoder: conflict rates, decision agreement, update cosine and norm ratio."""
    rows = []
    for m in dict.fromkeys(r["encoder"] for r in records):
        mine = [r for r in records if r["encoder"] == m]
        conflict = [r for r in mine if r["cos_exact"] <= 0 or r["cos_rep"] <= 0]
        cosines = [r["update_cos"] for r in mine]
        ratios = [r["norm_ratio"] for r in mine]
        row = {
            "encoder": m,
            "steps": len(mine),
            "conflict_exact": statistics.fmean(r["cos_exact"] <= 0 for r in mine),
            "conflict_rep": statistics.fmean(r["cos_rep"] <= 0 for r in mine),
            "decision_agreement": statistics.fmean(
                (r["cos_exact"] > 0) == (r["cos_rep"] > 0) for r in mine
            ),
            "update_cos_mean": statistics.fmean(cosines),
            "update_cos_q05": quantile(cosines, 0.05),
            "update_cos_median": quantile(cosines, 0.5),
            "norm_ratio_q25": quantile(ratios, 0.25),
            "norm_ratio_median": quantile(ratios, 0.5),
            "norm_ratio_q75": quantile(ratios, 0.75),
            "conflict_steps": len(conflict),
        }
        for key, values in (
            ("conflict_update_cos_mean", [r["update_cos"] for r in conflict]),
            ("conflict_update_cos_q05", [r["update_cos"] for r in conflict]),
            ("conflict_norm_ratio_median", [r["norm_ratio"] for r in conflict]),
        ):
            if not values:
                row[key] = float("nan")
            elif key.endswith("mean"):
                row[key] = statistics.fmean(values)
            else:
                row[key] = quantile(values, 0.05 if key.endswith("q05") else 0.5)
        rows.append(row)
    return rows


def adaptive(records: list[dict[str, Any]], taus: tuple[float, ...] = TAUS) -> list[dict]:
    """Per tau: share of steps taken exactly, and of steps that differ from exact MMPareto."""
    by_step: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        by_step.setdefault(r["step"], []).append(r)
    out = []
    for tau in taus:
        exact_steps = [any(r["cos_rep"] <= tau for r in rs) for rs in by_step.values()]
        differs = [
            not taken and any(r["cos_exact"] <= 0 for r in rs)
            for taken, rs in zip(exact_steps, by_step.values(), strict=True)
        ]
        out.append(
            {
                "exact_below": tau,
                "exact_step_share": statistics.fmean(exact_steps),
                "differs_from_exact_share": statistics.fmean(differs),
            }
        )
    return out


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown(
    summary: list[dict[str, Any]], modes: list[dict], settings: str, seconds: float
) -> str:
    """The report: one table per encoder, one for the adaptive mode."""

    def f(x: float) -> str:
        return "n/a" if x != x else f"{x:.3f}"

    lines = [
        "# Representation-level vs exact MMPareto (mmbench bench-approx)",
        "",
        f"{settings}; {seconds:.0f} s. Exact MMPareto trains; mmpareto_rep's decision and "
        "update are computed on the same batch and parameters, not applied.",
        "",
        "| encoder | steps | conflict exact | conflict rep | decisions agree | "
        "cos(update) mean / q05 | on conflict steps: n, cos mean / q05 | "
        "norm ratio q25 / median / q75 | on conflict steps: norm ratio median |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        lines.append(
            f"| {r['encoder']} | {r['steps']} | {f(r['conflict_exact'])} | "
            f"{f(r['conflict_rep'])} | {f(r['decision_agreement'])} | "
            f"{f(r['update_cos_mean'])} / {f(r['update_cos_q05'])} | {r['conflict_steps']}, "
            f"{f(r['conflict_update_cos_mean'])} / {f(r['conflict_update_cos_q05'])} | "
            f"{f(r['norm_ratio_q25'])} / {f(r['norm_ratio_median'])} / "
            f"{f(r['norm_ratio_q75'])} | {f(r['conflict_norm_ratio_median'])} |"
        )
    lines += [
        "",
        "Adaptive mode (strategy=mmpareto_rep strategy.method.exact_below=tau): exact step when",
        "some encoder's representation cosine is <= tau.",
        "",
        "| exact_below | steps taken exactly | steps differing from exact MMPareto |",
        "|---|---|---|",
    ]
    lines += [
        f"| {m['exact_below']} | {f(m['exact_step_share'])} | {f(m['differs_from_exact_share'])} |"
        for m in modes
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmbench bench-approx", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/approximation.csv"))
    parser.add_argument("--steps", type=int, default=300, help="training steps measured")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides on experiment=bench (e.g. seed=1)"
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps={args.steps}: measure at least one step")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = bench_config(args.overrides)
    start = time.perf_counter()
    records = run(cfg, args.steps, resolve_device(args.device))
    seconds = time.perf_counter() - start
    summary, modes = summarise(records), adaptive(records)
    write_csv(args.out, summary)
    write_csv(args.out.with_name(args.out.stem + "_steps.csv"), records)
    settings = (
        f"experiment=bench ({cfg.dataset.name}, {cfg.backbone.name}, lr "
        f"{cfg.optim.optimizer.lr}, batch {cfg.trainer.batch_size}), seed {cfg.seed}, "
        f"{args.steps} steps, gamma {cfg.strategy.method.gamma}, device {args.device}"
    )
    text = markdown(summary, modes, settings, seconds)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    print(f"written: {args.out}, {args.out.with_suffix('.md')}")
    return 0
