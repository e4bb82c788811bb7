"""Step cost of each strategy: milliseconds per training step, relative to ``uniform``.

A step = zero grads, forward, losses, the strategy's backward, SGD step. Strategies are
timed interleaved on identical model copies and batches: each round runs a block of
steps of every strategy, starting one strategy later each round. ``ms_per_step`` is the
median over all timed steps (with its quartiles); ``ratio_to_uniform`` is the median over
rounds of the strategy's block mean over uniform's in the same round, so that the slow
drifts of a shared machine cancel. As in training, freed host
memory is kept for reuse (``trainer.keep_freed_host_memory``; ``--release-host-memory``
measures glibc's default, where every step page-faults its buffers back in). Every
strategy config in conf/strategy/ is priced (instantiated from its yaml with ``${seed}`` = 0
and ``${dataset.modalities}`` = the case's modalities), plus ``official_4pass``, the
official MMPareto procedure (4 backward passes, cloned grads) for reference. Each row has
its ``cost_class`` (one backward, two backward, extra forward, four backward) and the
table is grouped by it.
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
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mmbench.engine import resolve_device, to_device
from mmbench.models.backbones import BackboneFactory, DigitConvNetBackbone, ResNet18Backbone
from mmbench.models.fusion import ConcatFusion
from mmbench.models.modality import ModalitySpec
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import GradientStrategy, StepLosses
from mmbench.strategies.official_mmpareto import OfficialFourPassMMPareto
from mmbench.utils.host_memory import keep_freed_host_memory

STRATEGY_CONF = Path(__file__).resolve().parents[2] / "conf" / "strategy"
REFERENCE = {"official_4pass": OfficialFourPassMMPareto}
STRATEGIES = sorted(p.stem for p in STRATEGY_CONF.glob("*.yaml")) + list(REFERENCE)

COST_CLASSES = ("one backward", "two backward", "extra forward", "four backward")
# Everything else (per-encoder g_mm and g_u: mgda, mmpareto, the aggregators) is two backward.
COST_CLASS = {
    "one_joint_loss": "one backward",
    "uniform": "one backward",
    "ogm_ge": "one backward",
    "ogm_ge_uniform": "one backward",
    "uncertainty": "one backward",
    "dwa": "one backward",
    "rlw": "one backward",
    "mmpareto_rep": "one backward",  # decided on dL/dz_m, one pass through the encoders
    "mgda_ub": "one backward",
    "agm": "extra forward",
    "official_4pass": "four backward",
}


def cost_class(name: str) -> str:
    return COST_CLASS.get(name, "two backward")


def build_strategy(name: str, modalities: tuple[ModalitySpec, ...]) -> GradientStrategy:
    """The strategy of conf/strategy/<name>.yaml (or a reference procedure)."""
    if name in REFERENCE:
        return REFERENCE[name]()
    root = OmegaConf.create(
        {"seed": 0, "dataset": {"modalities": [{"name": m.name} for m in modalities]}}
    )
    root.strategy = OmegaConf.load(STRATEGY_CONF / f"{name}.yaml")
    return instantiate(root.strategy.method)


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
        16,  # CREMA-D's classes; the batch of the CPU reference point (see README)
    ),
}


# The paper table's models at full size (GPU only: `make gpu-check`), batch 64 as the
# official scripts; shapes from conf/dataset/{cremad (fbank), kinetics_sounds, modelnet40}.
PAPER_CASES = {
    "resnet18_cremad_paper": ModelCase(
        "resnet18_cremad_paper",
        (
            ModalitySpec("audio", "audio", (1, 1024, 128)),
            ModalitySpec("visual", "frames", (2, 3, 224, 224)),
        ),
        ResNet18Backbone,
        6,
        64,
    ),
    "resnet18_ks_paper": ModelCase(
        "resnet18_ks_paper",
        (
            ModalitySpec("audio", "audio", (1, 1024, 128)),
            ModalitySpec("visual", "frames", (3, 3, 224, 224)),
        ),
        ResNet18Backbone,
        31,
        64,
    ),
    "resnet18_modelnet40_paper": ModelCase(
        "resnet18_modelnet40_paper",
        (
            ModalitySpec("front", "image", (3, 224, 224)),
            ModalitySpec("rear", "image", (3, 224, 224)),
        ),
        ResNet18Backbone,
        40,
        64,
    ),
}
ALL_CASES = {**CASES, **PAPER_CASES}


def make_batch(case: ModelCase, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch = {
        m.name: torch.randn((case.batch_size, *m.shape), generator=gen) for m in case.modalities
    }
    batch["label"] = torch.randint(0, case.num_classes, (case.batch_size,), generator=gen)
    return to_device(batch, device, channels_last=True)  # as the engine feeds the model


def time_steps(
    model: MultimodalClassifier,
    strategy: GradientStrategy,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    steps: int,
) -> list[float]:
    """Milliseconds of each of ``steps`` full training steps."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        strategy.backward(model, StepLosses.from_outputs(model(batch), batch), telemetry=False)
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
) -> dict[str, list[float]]:
    """Per strategy, the ms of every timed step, as one block of ``steps`` per round."""
    torch.manual_seed(0)
    base = MultimodalClassifier(case.modalities, case.backbone(), ConcatFusion, case.num_classes)
    base = base.to(device).to(memory_format=torch.channels_last)
    batch = make_batch(case, device)
    runs = {}
    for name in strategies:
        model = copy.deepcopy(base)
        strategy = build_strategy(name, case.modalities)
        params = [*model.parameters(), *strategy.parameters()]
        runs[name] = (model, strategy, torch.optim.SGD(params, lr=1e-3, momentum=0.9))
        time_steps(*runs[name], batch, warmup)
    blocks: dict[str, list[list[float]]] = {name: [] for name in strategies}
    for round_ in range(repeats):
        start = round_ % len(strategies)
        for name in strategies[start:] + strategies[:start]:
            blocks[name].append(time_steps(*runs[name], batch, steps))
    return blocks


def paired_ratio(blocks: list[list[float]], reference: list[list[float]]) -> float:
    """Median over rounds of mean(block) / mean(reference block of the same round)."""
    return statistics.median(
        statistics.fmean(b) / statistics.fmean(r) for b, r in zip(blocks, reference, strict=True)
    )


def quartiles(values: list[float]) -> tuple[float, float]:
    """First and third quartile (the spread behind a median)."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmbench bench-speed", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/step_cost.csv"))
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(CASES),
        choices=list(ALL_CASES),
        help=f"default: the CPU cases; the paper-size ones ({', '.join(PAPER_CASES)}) need a GPU",
    )
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per block")
    parser.add_argument("--repeats", type=int, default=10, help="rounds of blocks")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--release-host-memory",
        action="store_true",
        help="leave glibc's default (freed buffers unmapped, page faults every step)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    host_memory = (
        "kept" if not args.release_host_memory and keep_freed_host_memory() else "released"
    )
    args.strategies = list(dict.fromkeys(["uniform", *args.strategies]))
    device = resolve_device(args.device)
    rows = []
    for model_name in args.models:
        blocks = measure(
            ALL_CASES[model_name], args.strategies, args.steps, args.repeats, args.warmup, device
        )
        samples = {name: [ms for block in b for ms in block] for name, b in blocks.items()}
        medians = {name: statistics.median(values) for name, values in samples.items()}
        ratios = {name: paired_ratio(b, blocks["uniform"]) for name, b in blocks.items()}
        order = sorted(medians, key=lambda n: (COST_CLASSES.index(cost_class(n)), ratios[n]))
        for name in order:
            ms = medians[name]
            rows.append(
                {
                    "model": model_name,
                    "strategy": name,
                    "ms_per_step": round(ms, 3),
                    "ratio_to_uniform": round(ratios[name], 3),
                    "cost_class": cost_class(name),
                    "ms_q1": round(quartiles(samples[name])[0], 3),
                    "ms_q3": round(quartiles(samples[name])[1], 3),
                    "device": str(device),
                    "batch_size": ALL_CASES[model_name].batch_size,
                    "timed_steps": args.steps * args.repeats,
                    "threads": torch.get_num_threads(),
                    "host_memory": host_memory,
                }
            )
            print(
                f"{model_name:20s} {cost_class(name):14s} {name:16s} {ms:9.2f} ms/step  "
                f"x{ratios[name]:.2f} uniform",
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
