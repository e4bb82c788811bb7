"""make gpu-check: one line and exit 0 without CUDA; its GPU-hours arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mmbench.bench import gpu_check, step_cost


def test_without_cuda_it_says_so_in_one_line_and_exits_0(
    monkeypatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu_check.md"
    assert gpu_check.main(["--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed == [
        "gpu-check: CUDA is not available on this machine; nothing was run (exit 0)."
    ]
    assert not out.exists()


def test_gpu_hours_are_steps_times_the_measured_step_time() -> None:
    rows = [
        {"model": case, "strategy": s, "ms_per_step": str(100.0 * (i + 1))}
        for case, _ in gpu_check.PAPER_TABLE.values()
        for i, s in enumerate(gpu_check.SPEED_STRATEGIES)
    ]
    total, lines = gpu_check.gpu_hours(rows)
    ms = {s: 100.0 * (i + 1) for i, s in enumerate(gpu_check.SPEED_STRATEGIES)}
    per_step = sum(ms[m] for m in gpu_check.PAPER_STRATEGIES.values())  # one of each row
    steps = sum(3 * 50 * math.ceil(n / 64) for _, n in gpu_check.PAPER_TABLE.values())
    assert total == pytest.approx(steps * per_step / 3.6e6)
    assert len(lines) == 4 and lines[0].startswith("| cremad | resnet18_cremad_paper | 15750 |")


def test_the_paper_cases_exist_and_are_not_in_the_default_cpu_run() -> None:
    for case, _ in gpu_check.PAPER_TABLE.values():
        assert case in step_cost.ALL_CASES
    assert not set(step_cost.PAPER_CASES) & set(step_cost.CASES)
    cremad = step_cost.PAPER_CASES["resnet18_cremad_paper"]
    assert [m.shape for m in cremad.modalities] == [(1, 1024, 128), (2, 3, 224, 224)]
    assert cremad.batch_size == 64
    assert set(gpu_check.SPEED_STRATEGIES) <= set(step_cost.STRATEGIES)
