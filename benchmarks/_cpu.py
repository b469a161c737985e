"""CPU settings and shims for the CPU benchmarks: the same values, bit for bit, in less time.

- `keep_freed_memory`: glibc's malloc hands every freed tensor of more than 32 MB back to the OS, so the next one
  pays a page fault per 4 KB before it computes anything;
- `cpu_compact_logprobs`, `lean_cpu_logprob_tiles`: TRL 1.16 tunes its fused log-prob head
  (`trl.kernels.chunked_logprob`) for Triton devices; on a CPU an RL step of the reproduction spent about half its
  time in it.

Benchmark-only: the benchmark and reproduction scripts opt in with `install_cpu_shims` when they run on CPU
(repro_industrial.py: `--cpu_shims on`, its default outside `--quick`); `trl_rere` never imports this module, so
nothing a user imports is patched.
tests/test_benchmark_shims.py checks, bit for bit, that the shims change no value; it is left out of the default test
run (it tests TRL internals that only the benchmarks touch): `python -m pytest -q --run-benchmark-tests
tests/test_benchmark_shims.py`. Example:

```python
>>> from _cpu import cpu_compact_logprobs, keep_freed_memory, lean_cpu_logprob_tiles
>>> keep_freed_memory(); cpu_compact_logprobs(); lean_cpu_logprob_tiles()   # before building the trainer
```
"""

from __future__ import annotations

import ctypes
import ctypes.util

import torch


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the OS; False where not glibc.

    PyTorch's CPU allocator is plain malloc, and glibc serves blocks above its mmap threshold (at most 32 MB) with
    mmap and unmaps them when freed, so each new (tokens x vocabulary) temporary, a 50-beam KV cache or its logits
    starts on fresh pages: one page fault per 4 KB, which on this VM cost 10-15% of an SFT step or a 50-beam search.
    With mmap off (M_MMAP_MAX = 0) and a 1 GiB trim threshold, freed blocks stay in the heap and are reused.
    Allocation only: no computed value changes.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def cpu_compact_logprobs() -> None:
    """Score only completion positions in TRL's fused log-prob head on CPU as well (the values are identical).

    TRL 1.16 scores only the valid (completion) positions where Triton runs, and every position elsewhere, so that
    devices that compile per shape see one shape. On a CPU that means computing full-vocabulary log-probs for every
    prompt token of every completion, half of an RL step here; GRPO and ReRe rows both get this shim.
    """
    import trl.trainer.utils as trl_utils

    if hasattr(trl_utils, "_use_triton"):
        trl_utils._use_triton = lambda device: True  # only decides compaction; the kernels keep their own check


def lean_cpu_logprob_tiles() -> None:
    """Fold TRL's log-prob tiles in place on CPU instead of through a dozen (tokens x vocabulary) temporaries.

    TRL's torch fallback for devices without Triton (`_forward_tile`, `_backward_tile`) builds the gradient of a
    tile as `zeros + g * (one_hot.float() - exp(z - log_z))`, each step a new tokens x vocabulary tensor: at the
    reproduction's 2,500 completion tokens x 8,192 tokens that is ~80 MB per temporary, and the backward tile alone
    took a quarter of an RL step. The lean versions run the same operations in the same order, in place in the tile
    (TRL's scratch buffer, rewritten for every tile) or in buffers kept between calls, so every value is identical.
    Cases they do not cover (soft-capped logits, an entropy gradient, is_top1, non-fp32 tiles) go to TRL's functions
    unchanged.
    """
    import trl.kernels.chunked_logprob as kernels

    if getattr(kernels._backward_tile, "_lean", False):
        return
    trl_forward, trl_backward = kernels._forward_tile, kernels._backward_tile
    buffers: dict[str, torch.Tensor] = {}

    def scratch(name: str, shape) -> torch.Tensor:
        # kept between calls: a fresh tokens x vocabulary tensor costs more in page faults than the exp computed in it
        numel = shape[0] * shape[1]
        if name not in buffers or buffers[name].numel() < numel:
            buffers[name] = torch.empty(numel, dtype=torch.float32)
        return buffers[name][:numel].view(shape)

    def forward_tile(tile, tile_stride, targets, running_max, sum_exp, x_sum_exp, sq_sum_exp, z_sum,
                     max_before_target, target_logit, vocab_start, n_cols, logit_scale, softcap, inv_t, HAS_SOFTCAP,
                     HAS_ENTROPY, HAS_LOG_SUM_SQ_PROBS, HAS_MEAN_LOGITS, HAS_IS_TOP1, BLOCK_SIZE):
        if HAS_SOFTCAP or HAS_IS_TOP1 or tile.dtype != torch.float32:
            return trl_forward(tile, tile_stride, targets, running_max, sum_exp, x_sum_exp, sq_sum_exp, z_sum,
                               max_before_target, target_logit, vocab_start, n_cols, logit_scale, softcap, inv_t,
                               HAS_SOFTCAP, HAS_ENTROPY, HAS_LOG_SUM_SQ_PROBS, HAS_MEAN_LOGITS, HAS_IS_TOP1, BLOCK_SIZE)
        # z = tile * logit_scale * inv_t, as TRL's `_torch_transform` multiplies (skipping an exact x * 1.0); the
        # copy makes z contiguous like TRL's temporary, so the row reductions below add in the same order
        z = scratch("z", tile.shape)
        if logit_scale != 1.0:
            torch.mul(tile, logit_scale, out=z)
        else:
            z.copy_(tile)
        if inv_t != 1.0:
            z.mul_(inv_t)
        local = targets - vocab_start
        if HAS_MEAN_LOGITS:
            z_sum += z.sum(-1)
        new_m = torch.maximum(running_max, z.amax(-1))
        rescale = torch.exp(running_max - new_m)
        in_tile = (local >= 0) & (local < n_cols)
        target_z = z.gather(-1, local.clamp(0, n_cols - 1).unsqueeze(-1)).squeeze(-1)
        target_logit.copy_(torch.where(in_tile, target_z, target_logit))
        # z itself becomes e unless the entropy still needs z
        e = torch.sub(z, new_m.unsqueeze(-1), out=scratch("e", z.shape) if HAS_ENTROPY else z).exp_()
        sum_exp.mul_(rescale).add_(e.sum(-1))
        if HAS_LOG_SUM_SQ_PROBS:
            sq_sum_exp.mul_(rescale * rescale).add_((e * e).sum(-1))
        if HAS_ENTROPY:
            x_sum_exp.mul_(rescale).add_(z.mul_(e).sum(-1))
        running_max.copy_(new_m)

    def backward_tile(tile, tile_stride, targets, log_z, entropy, grad_logprobs, grad_entropy, vocab_start, n_cols,
                      logit_scale, softcap, inv_t, HAS_SOFTCAP, HAS_LOGPROB_GRAD, HAS_ENTROPY_GRAD, BLOCK_SIZE):
        if HAS_SOFTCAP or HAS_ENTROPY_GRAD or not HAS_LOGPROB_GRAD or tile.dtype != torch.float32:
            return trl_backward(tile, tile_stride, targets, log_z, entropy, grad_logprobs, grad_entropy, vocab_start,
                                n_cols, logit_scale, softcap, inv_t, HAS_SOFTCAP, HAS_LOGPROB_GRAD, HAS_ENTROPY_GRAD,
                                BLOCK_SIZE)
        # TRL: p = exp(tile * logit_scale * inv_t - log_z); grad = g * (one_hot - p) * inv_t * logit_scale.
        # In place: -p, +1 at the target (1 - p == -p + 1 exactly), * g, then the scales.
        if logit_scale != 1.0:
            tile.mul_(logit_scale)
        if inv_t != 1.0:
            tile.mul_(inv_t)
        tile.sub_(log_z.unsqueeze(-1)).exp_().neg_()
        local = targets - vocab_start
        hit = ((local >= 0) & (local < n_cols)).to(tile.dtype)  # adding 0.0 elsewhere leaves -p as it is
        tile.scatter_add_(1, local.clamp(0, n_cols - 1).unsqueeze(-1), hit.unsqueeze(-1))
        tile.mul_(grad_logprobs.unsqueeze(-1))
        if inv_t != 1.0:
            tile.mul_(inv_t)
        if logit_scale != 1.0:
            tile.mul_(logit_scale)

    forward_tile._lean = backward_tile._lean = True
    kernels._forward_tile, kernels._backward_tile = forward_tile, backward_tile


def install_cpu_shims(a) -> None:
    """On CPU (`a.device == "cpu"` and `a.cpu_shims != "off"`), installs the shims above (every value identical;
    checked by tests/test_benchmark_shims.py). They patch TRL's private log-prob tiles in this process only, so no run
    with `--cpu_shims off` gets them. Sets `a.shims` to what was installed, for the settings a script reports."""
    a.shims = []
    if a.device != "cpu" or a.cpu_shims == "off":
        return
    if keep_freed_memory():
        a.shims.append("malloc")
    cpu_compact_logprobs()  # TRL's fused log-prob head, tuned for Triton devices: same values, less CPU time
    lean_cpu_logprob_tiles()
    a.shims += ["compact", "lean"]
