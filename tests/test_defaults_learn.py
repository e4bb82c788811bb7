"""The default run and experiment=demo learn visibly in their first epochs (issue #12, item 7).

At the official lr 0.002 the digit conv nets sat at chance for several epochs (training loss
2.30); the CG-MNIST sets declare ``sgd_lr: 0.02``, which SGD uses unless a preset sets an lr.
At lr 0.02 and batch 64 the first epochs are chaotic: a change of fp32 summation order moved
the demo's loss after 2 epochs from 1.42 to 1.88 (bn0's fused backward) and then to 2.23 (the
batch sum of 552f610), so the demo now runs the bench's lr 0.01 at batch 32, and the test
asserts its loss against chance and against lr 0.002, not a head's accuracy.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmbench.train import fit

SHORT = [
    "trainer.epochs=2",
    "dataset.build.val_per_class=10",
    "dataset.build.test_per_class=20",
]


def test_default_run_uses_the_dataset_lr_and_demo_the_bench_optimiser(compose_cfg) -> None:
    default, demo, bench = (compose_cfg(o) for o in ([], ["experiment=demo"], ["experiment=bench"]))
    assert default.optim.optimizer.lr == default.dataset.sgd_lr == 0.02
    assert demo.optim.optimizer == bench.optim.optimizer
    assert demo.trainer.batch_size == bench.trainer.batch_size == 32
    assert demo.trainer.epochs == 6 and not demo.optim.step_scheduler


def test_demo_learns_in_two_epochs(compose_cfg, tmp_path: Path) -> None:
    losses = {}
    for lr in (None, 0.002):
        run_dir = tmp_path / str(lr)
        lr_override = [] if lr is None else [f"optim.optimizer.lr={lr}"]
        fit(compose_cfg(["experiment=demo", *SHORT, *lr_override]), run_dir)
        losses[lr] = pd.read_csv(run_dir / "history.csv")["train_loss"].iloc[-1]
    assert losses[None] < 2.0, losses  # chance: ln 10 = 2.30
    assert losses[0.002] - losses[None] > 0.2, losses
