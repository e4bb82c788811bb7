"""Kept host memory: training steps stop page-faulting their buffers back in."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmbench.utils.host_memory import keep_freed_host_memory

# Three MMPareto steps of the digit conv-net pair at batch 64 (as `make bench-speed`
# prices it), after three warm-up steps; prints the minor page faults of the timed steps.
FAULTS_PER_STEPS = """
import resource, sys, torch
from mmbench.bench.step_cost import CASES, build_strategy, make_batch
from mmbench.models.fusion import ConcatFusion
from mmbench.models.multimodal import MultimodalClassifier
from mmbench.strategies.base import StepLosses
from mmbench.utils.host_memory import keep_freed_host_memory
if sys.argv[1] == "keep":
    assert keep_freed_host_memory()
torch.set_num_threads(1)
torch.manual_seed(0)
case = CASES["convnet_pair_28"]
model = MultimodalClassifier(case.modalities, case.backbone(), ConcatFusion, case.num_classes)
model = model.to(memory_format=torch.channels_last)
batch = make_batch(case, torch.device("cpu"))
strategy = build_strategy("mmpareto", case.modalities)
def step():
    model.zero_grad(set_to_none=True)
    strategy.backward(model, StepLosses.from_outputs(model(batch), batch))
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    run = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_STEPS, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(run.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_kept_memory_removes_the_page_faults_of_each_step() -> None:
    released, kept = faults("release"), faults("keep")
    assert released > 3 * 2000  # thousands per step: every buffer is faulted in again
    assert kept < released / 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_keep_is_idempotent() -> None:
    assert keep_freed_host_memory() and keep_freed_host_memory()
