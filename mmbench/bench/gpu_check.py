"""`make gpu-check`: the CUDA path measured on one GPU, in one script (about 5-8 min).

1. the CUDA tests (``pytest -k cuda``: every test that skips without CUDA is named so);
2. a 2-job sweep with the ``gpus`` launcher on GPU 0 (``jobs_per_gpu=2``, experiment=bench,
   uniform and mmpareto_rep, 1 epoch of ``--sweep-batches`` batches): both complete, and
   whether they overlapped in time;
3. bf16 autocast against fp32 on the bench model: the fused loss of ``--amp-steps`` steps
   from the same start and batches, per strategy; passes when every step's relative
   difference is <= ``--amp-tol``;
4. ``bench-speed`` on CUDA at paper size (PAPER_CASES of step_cost: two ResNet-18, batch 64)
   and on the digit pair, for uniform, mgda, mmpareto, official_4pass and the fast variants;
5. the paper table's GPU-hours = sum over datasets of 3 seeds x 50 epochs x
   ceil(train / 64) steps x the measured step time of each strategy (steps only: data
   loading and evaluation excluded).

Writes ``outputs/benchmarks/gpu_check.md``. Without CUDA it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

from mmbench.bench import step_cost
from mmbench.models.fusion import ConcatFusion
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import StepLosses

ROOT = Path(__file__).resolve().parents[2]
SPEED_STRATEGIES = ["uniform", "mgda", "mmpareto", "official_4pass", "mmpareto_rep", "mgda_ub"]
AMP_STRATEGIES = ["uniform", "mmpareto", "mmpareto_rep"]
# Paper table (conf/sweep/paper.yaml): dataset -> (bench-speed case, training-set size).
# Sizes from /work/shared/spec/datasets.md: CREMA-D 6,698 (OGM-GE CSV), Kinetics-Sounds
# 14,799 (OGM-GE list; the other list in circulation has 20,715), CG-MNIST 60,000
# (val_per_class 0), ModelNet40 9,843 objects.
PAPER_TABLE = {
    "cremad": ("resnet18_cremad_paper", 6698),
    "kinetics_sounds": ("resnet18_ks_paper", 14799),
    "cgmnist": ("convnet_pair_28", 60000),
    "modelnet40": ("resnet18_modelnet40_paper", 9843),
}
PAPER_STRATEGIES = {  # the table's rows -> the measured strategy priced for them
    "one_joint_loss": "uniform",  # one backward of L_mm: priced as uniform (an upper bound)
    "uniform": "uniform",
    "mgda": "mgda",
    "mmpareto": "mmpareto",
}
PAPER_EPOCHS, PAPER_BATCH, PAPER_SEEDS = 50, 64, 3


def no_cuda_line() -> str:
    return "gpu-check: CUDA is not available on this machine; nothing was run (exit 0)."


def run_cuda_tests() -> tuple[bool, str]:
    """The CUDA tests, in a subprocess; returns (passed, the summary line)."""
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-k", "cuda", "tests"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return done.returncode == 0, lines[-1] if lines else done.stderr[-500:]


def run_gpus_sweep(out: Path, batches: int) -> tuple[bool, str]:
    """Two jobs on GPU 0 at once with the gpus launcher; both must complete."""
    command = [
        sys.executable,
        "-m",
        "mmbench.cli",
        "train",
        "-m",
        "hydra/launcher=gpus",
        "hydra.launcher.gpus=[0]",
        "hydra.launcher.jobs_per_gpu=2",
        "experiment=bench",
        "strategy=uniform,mmpareto_rep",
        "seed=0",
        "trainer.epochs=1",
        f"trainer.limit_train_batches={batches}",
        "trainer.device=cuda",
        "trainer.progress=off",
        f"paths.output_dir={out}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("multirun/*/*/metrics.json"))]
    statuses = [s.get("status") for s in summaries]
    spans = [
        (datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"]))
        for s in summaries
        if "started_at" in s and "finished_at" in s
    ]
    overlap = len(spans) == 2 and max(a for a, _ in spans) < min(b for _, b in spans)
    passed = done.returncode == 0 and statuses == ["completed", "completed"]
    detail = f"exit {done.returncode}, job statuses {statuses}, ran concurrently: {overlap}"
    if not passed:
        detail += f"; stderr tail: {done.stderr[-800:]!r}"
    return passed, detail


def loss_trajectory(strategy: str, amp: bool, steps: int) -> list[float]:
    """Fused loss of ``steps`` SGD steps (lr 0.02) of the digit pair on CUDA, fixed batches."""
    case = step_cost.CASES["convnet_pair_28"]
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = MultimodalClassifier(
        case.modalities, case.backbone(), ConcatFusion, case.num_classes
    ).to(device)
    method = step_cost.build_strategy(strategy, case.modalities)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    losses = []
    for i in range(steps):
        batch = step_cost.make_batch(case, device, seed=i)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            outputs = model(batch)
        step = StepLosses.from_outputs(outputs, batch)
        method.backward(model, step)
        optimizer.step()
        losses.append(step.fused.item())
    return losses


def amp_check(steps: int, tol: float) -> tuple[bool, list[str]]:
    """bf16 vs fp32 per strategy: max over steps of |L_bf16 - L_fp32| / L_fp32."""
    passed, lines = True, []
    for name in AMP_STRATEGIES:
        fp32, bf16 = loss_trajectory(name, False, steps), loss_trajectory(name, True, steps)
        worst = max(abs(a - b) / abs(b) for a, b in zip(bf16, fp32, strict=True))
        ok = all(math.isfinite(x) for x in bf16) and worst <= tol
        passed &= ok
        lines.append(
            f"| {name} | {fp32[0]:.4f} -> {fp32[-1]:.4f} | {bf16[0]:.4f} -> {bf16[-1]:.4f} | "
            f"{worst:.4f} | {'pass' if ok else 'FAIL'} |"
        )
    return passed, lines


def speed(out: Path, repeats: int) -> list[dict[str, str]]:
    """bench-speed on CUDA for the paper cases and the digit pair."""
    models = [*step_cost.PAPER_CASES, "convnet_pair_28"]
    argv = ["--out", str(out), "--device", "cuda", "--repeats", str(repeats), "--models"]
    step_cost.main([*argv, *models, "--strategies", *SPEED_STRATEGIES])
    with out.open() as f:
        return list(csv.DictReader(f))


def gpu_hours(rows: list[dict[str, str]]) -> tuple[float, list[str]]:
    """The paper table's GPU-hours from the measured step times (see the module doc)."""
    ms = {(r["model"], r["strategy"]): float(r["ms_per_step"]) for r in rows}
    total, lines = 0.0, []
    for dataset, (case, train) in PAPER_TABLE.items():
        steps = PAPER_SEEDS * PAPER_EPOCHS * math.ceil(train / PAPER_BATCH)
        hours = {row: steps * ms[(case, m)] / 3.6e6 for row, m in PAPER_STRATEGIES.items()}
        fast = steps * ms[(case, "mmpareto_rep")] / 3.6e6
        total += sum(hours.values())
        cells = " | ".join(f"{h:.2f}" for h in hours.values())
        lines.append(f"| {dataset} | {case} | {steps} | {cells} | {fast:.2f} |")
    return total, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/gpu_check.md"))
    parser.add_argument("--amp-steps", type=int, default=20)
    parser.add_argument("--amp-tol", type=float, default=0.05, help="max relative loss gap")
    parser.add_argument("--sweep-batches", type=int, default=20)
    parser.add_argument("--speed-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(no_cuda_line())
        return 0
    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = [
        "# GPU check (make gpu-check)",
        "",
        f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}.",
        "",
    ]
    tests_ok, tests_line = run_cuda_tests()
    report += ["## CUDA tests (pytest -k cuda)", "", f"{'pass' if tests_ok else 'FAIL'}: "]
    report[-1] += tests_line
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        sweep_ok, sweep_line = run_gpus_sweep(Path(tmp), args.sweep_batches)
    report += ["", "## gpus launcher, 2 jobs on GPU 0", "", f"{'pass' if sweep_ok else 'FAIL'}: "]
    report[-1] += sweep_line
    amp_ok, amp_lines = amp_check(args.amp_steps, args.amp_tol)
    report += [
        "",
        f"## bf16 autocast vs fp32 ({args.amp_steps} steps, tolerance {args.amp_tol})",
        "",
        "| strategy | fp32 loss first -> last | bf16 first -> last | max relative gap | |",
        "|---|---|---|---|---|",
        *amp_lines,
    ]
    rows = speed(args.out.with_name("gpu_step_cost.csv"), args.speed_repeats)
    report += [
        "",
        "## bench-speed on CUDA (ms per step, ratio to uniform)",
        "",
        "| model | strategy | ms/step | x uniform | cost class |",
        "|---|---|---|---|---|",
    ]
    report += [
        f"| {r['model']} | {r['strategy']} | {r['ms_per_step']} | {r['ratio_to_uniform']} | "
        f"{r['cost_class']} |"
        for r in rows
    ]
    total, hour_lines = gpu_hours(rows)
    report += [
        "",
        f"## Paper table GPU-hours ({PAPER_SEEDS} seeds x {PAPER_EPOCHS} epochs, batch "
        f"{PAPER_BATCH}; training steps only)",
        "",
        "| dataset | case | steps per strategy | "
        + " | ".join(PAPER_STRATEGIES)
        + " | mmpareto_rep instead |",
        "|---|---|---|" + "---|" * (len(PAPER_STRATEGIES) + 1),
        *hour_lines,
        "",
        f"Total: {total:.1f} GPU-hours (one_joint_loss priced as uniform).",
        "",
        f"Checked in {time.perf_counter() - start:.0f} s.",
    ]
    args.out.write_text("\n".join(report) + "\n")
    print("\n".join(report))
    print(f"written: {args.out}")
    return 0 if tests_ok and sweep_ok and amp_ok else 1


if __name__ == "__main__":
    sys.exit(main())
