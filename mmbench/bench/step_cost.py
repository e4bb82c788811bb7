"""Step cost of each strategy: milliseconds per training step, relative to ``uniform``.

A step = zero grads, forward, losses, the strategy's backward, SGD step. Strategies are
timed interleaved (round-robin blocks) on identical model copies and batches; the
median over all timed steps is reported. ``official_4pass`` is the official MMPareto
procedure (4 backward passes, cloned grads) for reference.
"""

from __future__ import annotations

import argparse
import copy
import csv
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmbench.engine import resolve_device
from mmbench.models.backbones import BackboneFactory, DigitConvNetBackbone, ResNet18Backbone
from mmbench.models.fusion import ConcatFusion
from mmbench.models.modality import ModalitySpec
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses
from mmbench.strategies.mgda import MGDA
from mmbench.strategies.mmpareto import MMPareto
from mmbench.strategies.official_mmpareto import OfficialFourPassMMPareto
from mmbench.strategies.one_joint_loss import OneJointLoss
from mmbench.strategies.uniform import Uniform

STRATEGIES: dict[str, Callable[[], GradientStrategy]] = {
    "one_joint_loss": OneJointLoss,
    "uniform": Uniform,
    "mgda": MGDA,
    "mmpareto": MMPareto,
    "official_4pass": OfficialFourPassMMPareto,
}


@dataclass(frozen=True)
class ModelCase:
    """A model to price: its modalities, backbone, classes and batch size."""

    name: str
    modalities: tuple[ModalitySpec, ...]
    backbone: Callable[[], BackboneFactory]
    num_classes: int
    batch_size: int


CASES = {
    "convnet_pair_28": ModelCase(
        "convnet_pair_28",
        (ModalitySpec("gray", "image", (1, 28, 28)), ModalitySpec("color", "image", (3, 28, 28))),
        DigitConvNetBackbone,
        10,
        64,
    ),
    "resnet18_av_small": ModelCase(
        "resnet18_av_small",
        (
            ModalitySpec("audio", "audio", (1, 128, 96)),
            ModalitySpec("visual", "frames", (2, 3, 64, 64)),
        ),
        ResNet18Backbone,
        6,
        8,
    ),
}


def make_batch(case: ModelCase, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch = {
        m.name: torch.randn((case.batch_size, *m.shape), generator=gen) for m in case.modalities
    }
    batch["label"] = torch.randint(0, case.num_classes, (case.batch_size,), generator=gen)
    return {k: v.to(device) for k, v in batch.items()}


def time_steps(
    model: MultimodalClassifier,
    strategy: GradientStrategy,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    steps: int,
) -> list[float]:
    """Milliseconds of each of ``steps`` full training steps."""
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        out = model(batch)
        losses = StepLosses(
            loss_fn(out.fused, batch["label"]),
            {m: loss_fn(v, batch["label"]) for m, v in out.unimodal.items()},
            out,
            batch["label"],
        )
        strategy.backward(model, losses, telemetry=False)
        optimizer.step()
        if batch["label"].is_cuda:
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    return times


def measure(
    case: ModelCase,
    strategies: list[str],
    steps: int,
    repeats: int,
    warmup: int,
    device: torch.device,
) -> dict[str, float]:
    """Median ms/step per strategy, timed in interleaved blocks."""
    torch.manual_seed(0)
    base = MultimodalClassifier(case.modalities, case.backbone(), ConcatFusion, case.num_classes)
    base = base.to(device).to(memory_format=torch.channels_last)
    batch = make_batch(case, device)
    runs = {}
    for name in strategies:
        model = copy.deepcopy(base)
        runs[name] = (
            model,
            STRATEGIES[name](),
            torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9),
        )
        time_steps(*runs[name], batch, warmup)
    samples: dict[str, list[float]] = {name: [] for name in strategies}
    for _ in range(repeats):
        for name in strategies:
            samples[name] += time_steps(*runs[name], batch, steps)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmbench bench-speed", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/step_cost.csv"))
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument(
        "--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES)
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per block")
    parser.add_argument("--repeats", type=int, default=4, help="interleaved blocks")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if "uniform" not in args.strategies:
        args.strategies.insert(0, "uniform")
    device = resolve_device(args.device)
    rows = []
    for model_name in args.models:
        medians = measure(
            CASES[model_name], args.strategies, args.steps, args.repeats, args.warmup, device
        )
        for name, ms in medians.items():
            rows.append(
                {
                    "model": model_name,
                    "strategy": name,
                    "ms_per_step": round(ms, 3),
                    "ratio_to_uniform": round(ms / medians["uniform"], 3),
                    "device": str(device),
                    "batch_size": CASES[model_name].batch_size,
                    "timed_steps": args.steps * args.repeats,
                }
            )
            print(
                f"{model_name:20s} {name:16s} {ms:9.2f} ms/step  "
                f"x{ms / medians['uniform']:.2f} uniform",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(args.out)
    print(f"written: {args.out}")
    return 0
