"""The fused bn0 + conv1 backward gives autograd's gradients and the modules' state."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mmbench.models.backbones import DigitConvNet
from mmbench.models.input_norm_conv import batch_sum, input_norm_conv, skips_input_grad


def pair(channels: int, dtype: torch.dtype, momentum: float | None = 0.1) -> tuple:
    torch.manual_seed(channels)
    bn = nn.BatchNorm2d(channels, momentum=momentum).to(dtype)
    conv = nn.Conv2d(channels, 8, 5, padding=2).to(dtype)
    with torch.no_grad():  # affine parameters away from their (1, 0) initialisation
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn, conv


LAYOUTS = [torch.contiguous_format, torch.channels_last]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_fused_backward_is_autograds_in_float64(
    channels: int, momentum: float | None, layout: torch.memory_format
) -> None:
    bn, conv = pair(channels, torch.float64, momentum)
    conv = conv.to(memory_format=layout)
    ref_bn, ref_conv = copy.deepcopy(bn), copy.deepcopy(conv)
    x = (torch.rand(6, channels, 12, 12, dtype=torch.float64) * 3 - 1).contiguous(
        memory_format=layout
    )
    upstream = torch.randn(6, 8, 12, 12, dtype=torch.float64).contiguous(memory_format=layout)
    assert skips_input_grad(x, bn, conv)
    for _ in range(2):  # the running statistics update identically, step after step
        (input_norm_conv(x, bn, conv) * upstream).sum().backward()
        (ref_conv(ref_bn(x)) * upstream).sum().backward()
    for got, want in zip(
        [*bn.parameters(), *conv.parameters()],
        [*ref_bn.parameters(), *ref_conv.parameters()],
        strict=True,
    ):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-12, atol=1e-12)
    for got, want in zip(bn.buffers(), ref_bn.buffers(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_sum_is_the_sum_over_the_batch(layout: torch.memory_format) -> None:
    torch.manual_seed(0)
    grad = torch.randn(5, 4, 7, 6, dtype=torch.float64).contiguous(memory_format=layout)
    got = batch_sum(grad)
    torch.testing.assert_close(got, grad.sum(0, keepdim=True), rtol=1e-13, atol=1e-13)
    strided = torch.randn(5, 4, 14, 6, dtype=torch.float64)[:, :, ::2]  # neither layout
    torch.testing.assert_close(batch_sum(strided), strided.sum(0, keepdim=True))


def test_the_fused_path_is_taken_only_where_it_is_exact() -> None:
    bn, conv = pair(3, torch.float32)
    x = torch.rand(4, 3, 8, 8)
    assert skips_input_grad(x, bn, conv)
    assert not skips_input_grad(x.requires_grad_(), bn, conv)  # the input's gradient is wanted
    x = x.detach()
    assert not skips_input_grad(x.half(), bn, conv)
    with torch.no_grad():
        assert not skips_input_grad(x, bn, conv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not skips_input_grad(x, bn, conv)
    assert not skips_input_grad(x, bn.eval(), conv)


def test_input_gradient_is_still_given_when_asked() -> None:
    bn, conv = pair(1, torch.float64)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    input_norm_conv(x, bn, conv).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("channels", [1, 3])
def test_digit_convnet_fast_forward_is_the_sequential_network(channels: int) -> None:
    """Pool before ReLU and the fused backward: PMR's conv net in order, same values and
    gradients (fp32: summation order only; the reorder alone: bit for bit)."""
    torch.manual_seed(0)
    plain = DigitConvNet(channels, fused_input_grad=False)
    fused = copy.deepcopy(plain)
    fused.fused_input_grad = True
    reference = copy.deepcopy(plain)
    x = torch.randn(16, channels, 28, 28)
    assert skips_input_grad(x, fused.features[0], fused.features[1])
    upstream = torch.randn(16, 512)

    def in_order(net: DigitConvNet) -> torch.Tensor:
        return net.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(net.features(x), 1), 1))

    want = in_order(reference)
    (want * upstream).sum().backward()
    for net, exact in ((plain, True), (fused, False)):
        got = net(x)
        (got * upstream).sum().backward()
        for p, q in zip(
            [got, *(p.grad for p in net.parameters())],
            [want, *(q.grad for q in reference.parameters())],
            strict=True,
        ):
            if exact:
                assert torch.equal(p, q)
            else:
                torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
