"""The default run and experiment=demo learn visibly in their first epochs (issue #12, item 7).

At the official lr 0.002 the digit conv nets sat at chance for several epochs (training loss
2.30); the CG-MNIST sets declare ``sgd_lr: 0.02``, which SGD uses unless a preset sets an lr.
Measured with the demo's first 2 epochs (smaller val/test splits): lr 0.02 -> training loss
1.21, gray head 31 % on test; lr 0.002 -> 2.24 and 12.5 %. At lr 0.02 these first epochs are
chaotic: a change of fp32 summation order (the fused bn0+conv1 backward) moved seed 0's loss
after 2 epochs from 1.42 to 1.88, and over seeds 0-3 it read 1.28-1.88 and the gray head
10-34 %, so the test asserts the loss against chance and against lr 0.002, not the head.
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


def test_default_run_and_demo_use_the_dataset_lr(compose_cfg) -> None:
    for overrides in ([], ["experiment=demo"]):
        cfg = compose_cfg(overrides)
        assert cfg.optim.optimizer.lr == cfg.dataset.sgd_lr == 0.02, overrides
    assert compose_cfg(["experiment=demo"]).trainer.epochs == 6


def test_demo_learns_in_two_epochs(compose_cfg, tmp_path: Path) -> None:
    losses = {}
    for lr in (0.02, 0.002):
        run_dir = tmp_path / str(lr)
        fit(compose_cfg(["experiment=demo", *SHORT, f"optim.optimizer.lr={lr}"]), run_dir)
        losses[lr] = pd.read_csv(run_dir / "history.csv")["train_loss"].iloc[-1]
    assert losses[0.02] < 2.0, losses  # chance: ln 10 = 2.30
    assert losses[0.002] - losses[0.02] > 0.2, losses
