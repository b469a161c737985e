"""The CPU shims the benchmarks install into TRL's fused log-prob head must not change a single value.

The shims (benchmarks/_cpu.py) are imported only by the benchmark scripts, and they patch TRL's private
`trl.kernels.chunked_logprob` tiles, so these tests are not part of the default run (a TRL release that reshapes
those internals breaks a benchmark, not the library). Run them with
`python -m pytest -q --run-benchmark-tests tests/test_benchmark_shims.py`, and before a benchmark run that reports
numbers with the shims on.
"""

import importlib
from pathlib import Path

import pytest
import torch


pytestmark = pytest.mark.benchmark
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def kernels(monkeypatch):
    """TRL's fused log-prob module, its two tile functions restored after the test (the shims replace them)."""
    kernels = pytest.importorskip("trl.kernels.chunked_logprob")
    monkeypatch.setattr(kernels, "_forward_tile", kernels._forward_tile)
    monkeypatch.setattr(kernels, "_backward_tile", kernels._backward_tile)
    return kernels


@pytest.fixture
def lean_cpu_logprob_tiles(monkeypatch):
    # imported here, not at collection, so the default run (which deselects these tests) never loads benchmark code
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("_cpu").lean_cpu_logprob_tiles


def _run(kernels, hidden, weight, targets, temperature, outputs, chunk_size, weights_grad):
    hidden = hidden.clone().requires_grad_(True)
    weight = weight.clone().requires_grad_(weights_grad)
    logprobs, entropy, log_sum_sq, mean_logits, is_top1 = kernels.ChunkedLogProbFunction.apply(
        hidden, weight, None, targets, temperature, chunk_size, None, 1.0, outputs
    )
    # a gradient that differs per token, as GRPO's advantages make it
    (logprobs * torch.linspace(-1.0, 2.0, logprobs.numel())).sum().backward()
    extra = [x for x in (entropy, log_sum_sq, mean_logits) if x is not None]
    return [logprobs.detach(), *[x.detach() for x in extra], hidden.grad] + ([weight.grad] if weights_grad else [])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("outputs", [("entropy",), (), ("entropy", "log_sum_sq_probs", "mean_logits")])
@pytest.mark.parametrize("chunk_size", [32768, 96])  # the whole vocabulary in one tile (TRL's default) or several
def test_lean_tiles_are_bit_identical(kernels, lean_cpu_logprob_tiles, temperature, outputs, chunk_size):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=gen) * 3
    weight = torch.randn(250, 16, generator=gen)
    targets = torch.randint(0, 250, (37,), generator=gen)
    reference = _run(kernels, hidden, weight, targets, temperature, outputs, chunk_size, True)
    lean_cpu_logprob_tiles()
    assert getattr(kernels._backward_tile, "_lean", False) and getattr(kernels._forward_tile, "_lean", False)
    lean = _run(kernels, hidden, weight, targets, temperature, outputs, chunk_size, True)
    assert len(lean) == len(reference)
    for a, b in zip(lean, reference):
        assert torch.equal(a, b)


def test_lean_tiles_fall_back_for_is_top1(kernels, lean_cpu_logprob_tiles):
    gen = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(9, 8, generator=gen), torch.randn(40, 8, generator=gen)
    targets = torch.randint(0, 40, (9,), generator=gen)
    args = (hidden, weight, None, targets, 1.0, 32768, None, 1.0, ("is_top1",))
    reference = kernels.ChunkedLogProbFunction.apply(*args)
    lean_cpu_logprob_tiles()
    lean = kernels.ChunkedLogProbFunction.apply(*args)
    assert torch.equal(lean[0], reference[0]) and torch.equal(lean[4], reference[4])
