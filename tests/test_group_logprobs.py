"""`group_log_probs` (each group's prompt run once) against TRL's full-sequence scoring: values and gradients."""

import pytest
import torch
from trl.trainer.utils import add_fused_lm_head

from trl_rere.group_logprobs import distinct_prompts, group_log_probs
from trl_rere.testing import tiny_causal_lm, train_tokenizer


PAD = 0


def batch():
    """Three left-padded prompts of different lengths, their groups interleaved, completions right-padded."""
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17]]
    completions = [[20, 21, 22], [23, 24], [25], [26, 27, 28], [29, 30, 31], [32, 33]]
    owner = [0, 1, 2, 1, 0, 2]
    p_len, c_len = max(map(len, prompts)), max(map(len, completions))
    ids, mask = [], []
    for o, c in zip(owner, completions):
        p = prompts[o]
        ids.append([PAD] * (p_len - len(p)) + p + c + [PAD] * (c_len - len(c)))
        mask.append([0] * (p_len - len(p)) + [1] * (len(p) + len(c)) + [0] * (c_len - len(c)))
    return torch.tensor(ids), torch.tensor(mask), c_len


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["the user bought a b c d e f g"], vocab_size=300)


def full_scoring(model, ids, mask, keep):
    """TRL 1.16's `_get_per_token_logps_and_entropies` for one chunk."""
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-keep] = -100
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    return out.log_probs[:, -keep:], None if out.entropy is None else out.entropy[:, -keep:]


def test_distinct_prompts_keep_batch_order_and_tell_masks_apart():
    ids = torch.tensor([[7, 1, 2], [0, 1, 2], [7, 1, 2], [0, 1, 2]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1]])  # row 3: a real token 0, not padding
    first, which = distinct_prompts(ids, mask)
    assert first.tolist() == [0, 1, 3] and which.tolist() == [0, 1, 0, 2]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_same_log_probs_entropies_and_gradients_as_full_sequences(tokenizer, attn):
    ids, mask, keep = batch()
    model = tiny_causal_lm(tokenizer, hidden_size=32, seed=0, attn_implementation=attn)
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    model.train()  # the policy's case: dropout is 0, gradients flow
    valid = mask[:, -keep:].bool()

    ref_lp, ref_ent = full_scoring(model, ids, mask, keep)
    (ref_lp[valid].sum() + ref_ent[valid].sum()).backward()
    ref_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()

    lp, ent = group_log_probs(model, ids, mask, keep, compute_entropy=True)
    assert lp.shape == ref_lp.shape == ent.shape
    torch.testing.assert_close(lp[valid], ref_lp[valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent[valid], ref_ent[valid], atol=1e-5, rtol=1e-5)
    assert torch.all(lp[~valid] == 0)  # padding scored 0, as TRL's head does
    (lp[valid].sum() + ent[valid].sum()).backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[k], atol=1e-5, rtol=1e-4, msg=k)
    assert any(ref_grads[k].abs().sum() > 0 for k in ref_grads)


def test_through_a_peft_model(tokenizer):
    from peft import LoraConfig, get_peft_model

    ids, mask, keep = batch()
    model = tiny_causal_lm(tokenizer, hidden_size=32, seed=1)
    add_fused_lm_head(model)  # before PEFT wraps it, as GRPOTrainer does
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    valid = mask[:, -keep:].bool()
    ref, _ = full_scoring(model, ids, mask, keep)
    lp, ent = group_log_probs(model, ids, mask, keep)
    assert ent is None
    torch.testing.assert_close(lp[valid], ref[valid], atol=1e-5, rtol=1e-5)


def test_prompt_of_one_token_is_refused(tokenizer):
    model = tiny_causal_lm(tokenizer, hidden_size=32)
    add_fused_lm_head(model)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        group_log_probs(model, torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long), logits_to_keep=2)


def test_benchmark_quick_run_agrees_and_leaves_results_alone():
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    results = repo / "benchmarks" / "group_logprobs.md"
    before = results.read_bytes()
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "group_logprobs.py"), "--quick", "--repeats", "1",
                           "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^\| (sid|title) \|.*\| ([0-9.e+-]+) \|$", proc.stdout, flags=re.M)
    assert {name for name, _ in rows} == {"sid", "title"}
    assert all(float(diff) < 1e-4 for _, diff in rows)
    assert results.read_bytes() == before
