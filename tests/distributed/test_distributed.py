"""ReReTrainer under `accelerate launch` with 2 CPU processes: plain DDP, DeepSpeed ZeRO-2 and ZeRO-3, with and
without LoRA; uneven prompts across ranks; ZeRO-3 checkpoints; resuming; the sampling ablations and the sharded
ranking evaluation under ZeRO-3; `shared_prompt_logprobs` under ZeRO-2 and ZeRO-3.

Run: `pytest tests/distributed -m distributed -x` (10 launches; see conftest.py for the fixtures).

Every beam-search launch trains 4 steps of 2 prompts x G=4 beams per rank (tests/distributed/run_rere.py); the
sampling launches train 2 steps and then evaluate 5 rows across both ranks. Rank 0 always gets
users with long histories of long titles (~160-prompt tokens, beams of 20-35 tokens) and rank 1 users with one short
title (~30 tokens, beams of 7-13 tokens), so the ranks' beam searches finish after different numbers of steps.

Tolerances, against the plain-DDP run with the same layout (same prompts per rank, same padding):
- logged metrics: `math.isclose(rel_tol=1e-4, abs_tol=1e-6)`. Observed: ZeRO-2/3 vs DDP within 1e-6 relative
  (grad_norm 7e-7), the GRPO loss (~1e-9..1e-4, near zero by construction) within 1e-9 absolute, rewards and
  rere/* group metrics identical, and the beams (titles) identical.
- final weights after 4 steps (3 of them with a non-zero learning rate): max |diff| <= 2e-5. Observed 1.2e-7 (full
  model) and 1.2e-6 (LoRA: Adam amplifies float noise where gradients are ~0); one Adam step moves a weight by up to
  the learning rate, 1e-3.
- ZeRO-3 checkpoint vs the weights gathered at the end of training: exact (both are the same fp32 tensors).
- resumed vs uninterrupted ZeRO-3 run: weights and optimizer moments max |diff| <= 1e-6 (observed: bit-identical),
  learning rates exact, same prompts and beams at steps 3-4.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch


pytestmark = pytest.mark.distributed

STEPS = 4
G = 4
METRIC_REL_TOL = 1e-4
METRIC_ABS_TOL = 1e-6
WEIGHT_ATOL = 2e-5
RESUME_ATOL = 1e-6
SAMPLING_STEPS = 2
EVAL_ROWS = 5  # odd: rank 0 evaluates 3 rows, rank 1 two and a padding row
EVAL_BEAMS = 6  # as run_rere.py evaluates

# Logged per step and compared with the DDP baseline.
COMPARED_METRICS = [
    "loss",
    "grad_norm",
    "learning_rate",
    "kl",
    "entropy",
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "rewards/rule_reward/mean",
    "rewards/ranking_reward/mean",
    "rere/target_in_group",
    "rere/distinct_items_per_group",
    "rere/mean_beam_score",
    "rere/HR@1",
    "rere/NDCG@5",
    "num_tokens",
    "completions/mean_length",
]

# Run name -> (accelerate config in tests/distributed/configs, run_rere.py arguments).
RUNS = {
    "ddp": ("ddp.yaml", ["--max-steps", str(STEPS), "--dump-weights"]),
    "ddp_lora": ("ddp.yaml", ["--max-steps", str(STEPS), "--lora", "--dump-weights"]),
    "zero2": ("deepspeed_zero2.yaml", ["--max-steps", str(STEPS), "--dump-weights"]),
    "zero3": ("deepspeed_zero3.yaml", ["--max-steps", str(STEPS), "--save-steps", "2", "--dump-weights"]),
    # LoRA, and generate() without gathering the weights first: every layer's shards are fetched during the beam
    # search, which only works if the ranks stay in lock-step (synced_gpus) although rank 1 finishes much earlier.
    "zero3_lora": (
        "deepspeed_zero3.yaml",
        ["--max-steps", str(STEPS), "--lora", "--no-ds3-gather", "--save-steps", str(STEPS), "--dump-weights"],
    ),
    # each group's prompt scored once (policy and reference) under both ZeRO stages; compared with DDP's TRL scoring
    **{
        f"zero{stage}_shared": (f"deepspeed_zero{stage}.yaml",
                                ["--max-steps", str(STEPS), "--shared-prompt-logprobs", "--dump-weights"])
        for stage in (2, 3)
    },
    # the sampling ablations under ZeRO-3, then the ranking evaluation of the trained, still sharded model
    **{
        f"zero3_{strategy}": (
            "deepspeed_zero3.yaml",
            ["--max-steps", str(SAMPLING_STEPS), "--strategy", strategy, "--eval-rows", str(EVAL_ROWS),
             "--dump-weights"],
        )
        for strategy in ("sample", "dynamic")
    },
}


def run(launcher, name: str, *extra: str):
    config, args = RUNS[name]
    return launcher(name, config, *args, *extra)


# -- helpers ------------------------------------------------------------------------------------------------------
def step_logs(result: dict) -> dict[int, dict]:
    return {h["step"]: h for h in result["log_history"] if "loss" in h}


def load_weights(run_) -> dict[str, torch.Tensor]:
    return torch.load(run_.out / "final_weights.pt", map_location="cpu", weights_only=True)


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert sorted(a) == sorted(b), f"different parameter names: {sorted(set(a) ^ set(b))[:5]}"
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def assert_metrics_close(result: dict, baseline: dict, steps, what: str) -> None:
    mine, base = step_logs(result), step_logs(baseline)
    for step in steps:
        for key in COMPARED_METRICS:
            if key not in base[step]:
                continue
            a, b = mine[step][key], base[step][key]
            assert math.isclose(a, b, rel_tol=METRIC_REL_TOL, abs_tol=METRIC_ABS_TOL), (
                f"{what}: step {step} {key} = {a!r}, baseline {b!r} (rel {abs(a - b) / (abs(b) + 1e-30):.2e})"
            )


def assert_same_beams(run_, baseline, steps=None) -> None:
    for r in (0, 1):
        mine = [(g["step"], g["prompt"], g["target"], g["titles"]) for g in run_.rank(r)["groups"]]
        base = [(g["step"], g["prompt"], g["target"], g["titles"]) for g in baseline.rank(r)["groups"]]
        if steps is not None:
            mine = [g for g in mine if g[0] in steps]
            base = [g for g in base if g[0] in steps]
        assert mine == base, f"rank {r}: prompts/beams differ from {baseline.name}"


def check_common(run_, stage: int, lora: bool) -> None:
    """What every launch must show: 2 processes, the right backend/stage, different prompts per rank, G valid
    distinct catalog titles per group, finite losses and the ReRe metrics logged."""
    r0, r1 = run_.rank(0), run_.rank(1)
    for r, res in ((0, r0), (1, r1)):
        assert res["process_index"] == r
        assert res["num_processes"] == 2 and res["world_size"] == 2, res
        assert res["backend"] == "gloo"
        assert res["zero_stage"] == stage
        assert res["lora"] == lora
        assert res["global_step"] == STEPS
        if stage == 0:
            assert res["distributed_type"].endswith("MULTI_CPU")
            assert res["engine_class"] == "DistributedDataParallel"
        else:
            assert res["distributed_type"].endswith("DEEPSPEED")
            assert res["engine_class"] == "DeepSpeedEngine" and res["engine_zero_stage"] == stage
        # one beam search (generate call) per generation batch, 2 prompts each
        assert len(res["generate_calls"]) == STEPS
        assert all(c["num_prompts"] == 2 for c in res["generate_calls"])
        assert len(res["groups"]) == 2 * STEPS
        for g in res["groups"]:
            assert len(g["titles"]) == G and g["valid"] and g["distinct"] and g["on_trie"], g
            assert g["ranks"] == list(range(G)), g
            assert all(math.isfinite(s) for s in g["scores"]), g
            assert g["scores"] == sorted(g["scores"], reverse=True), g
        logs = step_logs(res)
        assert sorted(logs) == list(range(1, STEPS + 1))
        for step, h in logs.items():
            for key in ("loss", "grad_norm", "kl", "reward", "rere/target_in_group", "rere/mean_beam_score"):
                assert key in h and math.isfinite(h[key]), (step, key, h.get(key))
            assert h["rere/distinct_items_per_group"] == G
    # different prompts on each rank, and much longer ones on rank 0
    p0 = {g["prompt"] for g in r0["groups"]}
    p1 = {g["prompt"] for g in r1["groups"]}
    assert p0 and p1 and not p0 & p1
    assert min(g["prompt_tokens"] for g in r0["groups"]) > 3 * max(g["prompt_tokens"] for g in r1["groups"])
    # rank 0's beams (long titles) need more decoding steps than rank 1's: the searches finish at different steps
    for c0, c1 in zip(r0["generate_calls"], r1["generate_calls"]):
        assert c0["generated_steps"] > c1["generated_steps"], (c0, c1)
    # the replicas agree on the trained weights
    assert r0["weights_sha256"] == r1["weights_sha256"]
    assert r0["weights_numel"] == r1["weights_numel"]


def check_zero3_sharding(res: dict, lora: bool) -> None:
    for when in ("sharding_before_train", "sharding_after_train"):
        s = res[when]
        if when == "sharding_before_train" and lora:
            # the base model was partitioned at load (zero.Init); the LoRA adapters join at deepspeed.initialize
            assert s["params_not_partitioned"] and all("lora_" in n for n in s["params_not_partitioned"]), s
        else:
            assert s["zero3_partitioned"] and not s["params_not_partitioned"], s
        # partitioned parameters hold no data outside a gather (only un-partitioned LoRA adapters do, before train)
        assert s["materialized_numel"] == s["total_numel"] - s["partitioned_numel"], f"{when}: {s}"
        assert s["params_with_full_local_copy"] == 0, f"{when}: some parameters are not partitioned: {s}"
        total, local = s["partitioned_numel"], s["local_partition_numel"]
        # each rank holds ceil(numel / 2) of every parameter
        assert total / 2 <= local <= total / 2 + s["num_params"], s
    s = res["sharding_after_train"]
    # fp32 master weights (the optimizer's partition): half of the trainable parameters
    trainable = s["trainable_numel"]
    assert s["fp32_master_attr"] == "fp32_partitioned_groups_flat"
    assert trainable / 2 <= s["fp32_master_local_numel"] <= trainable / 2 + s["num_params"], s
    if lora:
        assert trainable < s["total_numel"] / 10
    else:
        assert trainable == s["total_numel"]
        # beta != 0: the reference model is sharded the same way
        assert s["ref_total_numel"] == s["total_numel"]
        assert s["ref_total_numel"] / 2 <= s["ref_local_partition_numel"] <= s["ref_total_numel"] / 2 + s["num_params"]


def check_synced_generation(run_, gathered: bool) -> None:
    """Under ZeRO-3 both ranks make the same number of forward passes in every beam search, although rank 1's
    beams finish long before rank 0's (synced_gpus); with gathering, the full weights are visible inside generate."""
    r0, r1 = run_.rank(0), run_.rank(1)
    for c0, c1 in zip(r0["generate_calls"], r1["generate_calls"]):
        assert c0["synced_gpus"] and c1["synced_gpus"]
        assert c0["forward_calls"] == c1["forward_calls"], (c0, c1)
        # one forward encodes the prompts once, then one per step; rank 1 keeps stepping until rank 0 is done
        assert c1["forward_calls"] > c1["generated_steps"] + 1, "rank 1 should keep stepping until rank 0 is done"
        assert c0["prompt_width"] > 3 * c1["prompt_width"]
        assert c0["all_params_full_inside_generate"] is gathered and c1["all_params_full_inside_generate"] is gathered


# -- tests --------------------------------------------------------------------------------------------------------
def test_ddp(launch):
    ddp = run(launch, "ddp")
    check_common(ddp, stage=0, lora=False)
    for c in ddp.rank(0)["generate_calls"] + ddp.rank(1)["generate_calls"]:
        # one forward encodes the prompts once for all beams, then one per generated step
        assert not c["synced_gpus"] and c["forward_calls"] == c["generated_steps"] + 1
    # learning rates: warmup (3% of 4 steps -> 1 step, lr 0) then cosine from 1e-3
    assert [t["lr_used"] for t in ddp.rank(0)["lr_trace"]] == pytest.approx([0.0, 1e-3, 7.5e-4, 2.5e-4])
    # training moved the weights
    logs = step_logs(ddp.rank(0))
    assert logs[STEPS]["kl"] > 0


def test_ddp_lora(launch):
    lora, ddp = run(launch, "ddp_lora"), run(launch, "ddp")
    check_common(lora, stage=0, lora=True)
    # before the first real update (step 1 has lr 0 and LoRA starts as the identity) the runs see the same model
    assert_same_beams(lora, ddp, steps={0, 1})
    for step in (1, 2):
        for key in ("reward", "rere/target_in_group", "rere/mean_beam_score", "kl"):
            a, b = step_logs(lora.rank(0))[step][key], step_logs(ddp.rank(0))[step][key]
            assert math.isclose(a, b, rel_tol=METRIC_REL_TOL, abs_tol=METRIC_ABS_TOL), (step, key, a, b)
    weights = load_weights(lora)
    lora_b = [w for k, w in weights.items() if "lora_B" in k]
    assert lora_b and max(w.abs().max().item() for w in lora_b) > 0, "the LoRA adapters did not train"


def test_zero2_matches_ddp(ds_launch):
    z2, ddp = run(ds_launch, "zero2"), run(ds_launch, "ddp")
    check_common(z2, stage=2, lora=False)
    for res in z2.ranks:
        s = res["sharding_after_train"]
        # ZeRO-2: parameters replicated, fp32 master weights / optimizer states partitioned
        assert s["materialized_numel"] == s["total_numel"]
        assert s["fp32_master_attr"] == "single_partition_of_fp32_groups"
        assert s["total_numel"] / 2 <= s["fp32_master_local_numel"] <= s["total_numel"] / 2 + s["num_params"]
    assert_metrics_close(z2.rank(0), ddp.rank(0), range(1, STEPS + 1), "ZeRO-2 vs DDP")
    assert_same_beams(z2, ddp)
    assert max_abs_diff(load_weights(z2), load_weights(ddp)) <= WEIGHT_ATOL


def test_zero3_sharded_uneven_ranks_match_ddp(ds_launch):
    z3, ddp = run(ds_launch, "zero3"), run(ds_launch, "ddp")
    check_common(z3, stage=3, lora=False)
    for res in z3.ranks:
        check_zero3_sharding(res, lora=False)
    check_synced_generation(z3, gathered=True)
    assert_metrics_close(z3.rank(0), ddp.rank(0), range(1, STEPS + 1), "ZeRO-3 vs DDP")
    assert_same_beams(z3, ddp)
    assert max_abs_diff(load_weights(z3), load_weights(ddp)) <= WEIGHT_ATOL


def test_zero3_checkpoint_reloads_into_plain_model(ds_launch, assets):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_rere import ItemCatalog, ItemTrie, constrained_beam_search

    z3 = run(ds_launch, "zero3")
    ckpt = z3.out / "trainer" / f"checkpoint-{STEPS}"
    assert (z3.out / "trainer" / "checkpoint-2").is_dir() and (ckpt / "model.safetensors").is_file()
    # the DeepSpeed shards are there too, one optimizer partition per rank
    assert sorted(p.name for p in (ckpt / f"global_step{STEPS}").glob("*optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    loaded = {n: p.detach() for n, p in model.named_parameters()}
    gathered = load_weights(z3)
    assert sorted(loaded) == sorted(gathered)
    for name in gathered:
        assert torch.equal(loaded[name], gathered[name]), f"{name}: checkpoint != weights gathered after training"
    initial = {n: p.detach() for n, p in AutoModelForCausalLM.from_pretrained(assets).named_parameters()}
    assert max_abs_diff(loaded, initial) > 1e-4, "the checkpoint holds the untrained weights"

    # the reloaded plain model runs ReRe's constrained beam search on its own
    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    data = json.loads((Path(assets) / "data.json").read_text())
    trie = ItemTrie.from_catalog(ItemCatalog.from_titles(data["titles"]), tokenizer)
    prompts = [data["train"][0]["prompt"], data["train"][2]["prompt"]]
    beams = constrained_beam_search(model, tokenizer, prompts, trie, num_beams=G)
    for group in beams:
        assert group.complete and len(set(group.titles)) == G and all(t in data["titles"] for t in group.titles)


def test_zero3_resume_continues_identically(ds_launch):
    z3 = run(ds_launch, "zero3")
    ckpt = z3.out / "trainer" / "checkpoint-2"
    resumed = ds_launch("zero3_resume", "deepspeed_zero3.yaml", "--max-steps", str(STEPS), "--save-steps", "2",
                        "--dump-weights", "--resume", str(ckpt))
    for res in resumed.ranks:
        assert res["resumed_from"] == str(ckpt) and res["global_step"] == STEPS and res["zero_stage"] == 3
        check_zero3_sharding(res, lora=False)
    # only steps 3-4 ran, with the scheduler where the first run had it
    for r in (0, 1):
        first = {t["step"]: t for t in z3.rank(r)["lr_trace"]}
        again = resumed.rank(r)["lr_trace"]
        assert [t["step"] for t in again] == [3, 4]
        assert again == [first[3], first[4]]
        # same data order (the dataloader skipped the first 2 batches) and the same beams
        assert len(resumed.rank(r)["groups"]) == 2 * (STEPS - 2)
    assert_same_beams(resumed, z3, steps={2, 3})  # global_step before the step is taken
    check_synced_generation(resumed, gathered=True)
    assert_metrics_close(resumed.rank(0), z3.rank(0), (3, 4), "resumed vs uninterrupted ZeRO-3")
    # same final weights and the same optimizer state (Adam moments) in the step-4 checkpoints
    assert max_abs_diff(load_weights(resumed), load_weights(z3)) <= RESUME_ATOL
    assert resumed.rank(0)["weights_sha256"] == resumed.rank(1)["weights_sha256"]
    for r in (0, 1):
        name = f"global_step{STEPS}/zero_pp_rank_{r}_mp_rank_00_optim_states.pt"
        a = torch.load(z3.out / "trainer" / f"checkpoint-{STEPS}" / name, map_location="cpu", weights_only=False)
        b = torch.load(resumed.out / "trainer" / f"checkpoint-{STEPS}" / name, map_location="cpu", weights_only=False)
        sa, sb = a["optimizer_state_dict"]["optimizer_state_dict"], b["optimizer_state_dict"]["optimizer_state_dict"]
        assert sa["state"].keys() == sb["state"].keys()
        for i in sa["state"]:
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(sa["state"][i][key], sb["state"][i][key], rtol=0, atol=RESUME_ATOL), (r, i, key)
            assert int(sa["state"][i]["step"]) == int(sb["state"][i]["step"]) == STEPS
        for fa, fb in zip(a["optimizer_state_dict"]["fp32_flat_groups"], b["optimizer_state_dict"]["fp32_flat_groups"]):
            assert torch.allclose(fa, fb, rtol=0, atol=RESUME_ATOL)
    sched_a = torch.load(z3.out / "trainer" / f"checkpoint-{STEPS}" / "scheduler.pt", weights_only=False)
    sched_b = torch.load(resumed.out / "trainer" / f"checkpoint-{STEPS}" / "scheduler.pt", weights_only=False)
    assert sched_a["last_epoch"] == sched_b["last_epoch"] == STEPS and sched_a["_last_lr"] == sched_b["_last_lr"]


def test_zero3_lora_without_gathering_matches_ddp_lora(ds_launch, assets):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    z3l, ddpl = run(ds_launch, "zero3_lora"), run(ds_launch, "ddp_lora")
    check_common(z3l, stage=3, lora=True)
    for res in z3l.ranks:
        assert res["ds3_gather_for_generation"] is False
        check_zero3_sharding(res, lora=True)
    check_synced_generation(z3l, gathered=False)
    assert_metrics_close(z3l.rank(0), ddpl.rank(0), range(1, STEPS + 1), "ZeRO-3+LoRA vs DDP+LoRA")
    assert_same_beams(z3l, ddpl)
    gathered = load_weights(z3l)
    assert max_abs_diff(gathered, load_weights(ddpl)) <= WEIGHT_ATOL
    # the adapter saved under ZeRO-3 loads onto the plain base model and equals the trained weights
    ckpt = z3l.out / "trainer" / f"checkpoint-{STEPS}"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(assets), ckpt)
    loaded = {n: p.detach() for n, p in model.named_parameters()}
    assert sorted(loaded) == sorted(gathered)
    for name in gathered:
        assert torch.equal(loaded[name], gathered[name]), name


@pytest.mark.parametrize("stage", [2, 3])
def test_shared_prompt_logprobs_under_zero_matches_ddp(ds_launch, stage):
    """`shared_prompt_logprobs` (the prompt's KV cache shared by the group, two forward passes per scoring call)
    trains under ZeRO-2 and ZeRO-3 to the weights of plain DDP with TRL's full-sequence scoring."""
    shared, ddp = run(ds_launch, f"zero{stage}_shared"), run(ds_launch, "ddp")
    check_common(shared, stage=stage, lora=False)
    assert not ddp.rank(0)["shared_scoring_calls"], "the baseline must use TRL's scoring"
    rows_per_step = 2 * G
    for res in shared.ranks:
        assert res["shared_prompt_logprobs"] is True
        calls = res["shared_scoring_calls"]
        # every step scores its 8 completions through the shared path, with gradient (policy) and without (reference)
        assert sum(c["rows"] for c in calls if c["grad"]) >= STEPS * rows_per_step, calls
        assert sum(c["rows"] for c in calls if not c["grad"]) >= STEPS * rows_per_step, calls
        if stage == 3:
            check_zero3_sharding(res, lora=False)
    assert_metrics_close(shared.rank(0), ddp.rank(0), range(1, STEPS + 1), f"ZeRO-{stage} shared scoring vs DDP")
    assert_same_beams(shared, ddp)
    assert max_abs_diff(load_weights(shared), load_weights(ddp)) <= WEIGHT_ATOL


@pytest.mark.parametrize("strategy", ["sample", "dynamic"])
def test_zero3_trie_sampling_and_ranking_eval(ds_launch, assets, strategy):
    """The sampling ablations train under ZeRO-3 with ranks whose samples finish at different steps, and
    `evaluate_ranking` of the sharded model across both processes equals a single-process evaluation of the same
    weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_rere import ItemCatalog, ItemTrie
    from trl_rere.evaluation import evaluate_ranking

    z3 = run(ds_launch, f"zero3_{strategy}")
    r0, r1 = z3.rank(0), z3.rank(1)
    draws = G if strategy == "sample" else math.ceil(1.5 * G)  # dynamic_sampling_factor defaults to 1.5
    for res in (r0, r1):
        assert res["zero_stage"] == 3 and res["sampling_strategy"] == strategy
        assert res["global_step"] == SAMPLING_STEPS
        check_zero3_sharding(res, lora=False)
        # training draws by sampling; the ranking evaluation after it runs through the same decoding backend, so its
        # beam searches follow in the record
        calls, evaluation = res["generate_calls"][:SAMPLING_STEPS], res["generate_calls"][SAMPLING_STEPS:]
        assert [c["function"] for c in calls] == ["sample_from_trie"] * SAMPLING_STEPS
        assert all(c["function"] == "generate_beams" for c in evaluation), evaluation
        assert all(c["num_prompts"] == 2 and len(c["beam_lengths"]) == 2 * draws for c in calls), calls
        for g in res["groups"]:
            assert len(g["titles"]) == G and g["valid"] and g["on_trie"], g
        for step, h in step_logs(res).items():
            for key in ("loss", "grad_norm", "kl", "reward"):
                assert math.isfinite(h[key]), (step, key, h[key])
    for c0, c1 in zip(r0["generate_calls"], r1["generate_calls"]):
        # the ranks' samples end at different steps (mostly short titles on rank 1); under ZeRO-3 both keep
        # stepping until the longest sample on either rank is done
        assert c0["synced_gpus"] and c0["forward_calls"] == c1["forward_calls"], (c0, c1)
        assert c0["forward_calls"] >= max(c0["beam_lengths"] + c1["beam_lengths"]), (c0, c1)
    assert r0["weights_sha256"] == r1["weights_sha256"]

    # ranking evaluation of the trained model while it is still sharded across the two processes
    e0, e1 = r0["ranking_eval"], r1["ranking_eval"]
    assert e0["metrics"] == e1["metrics"] and e0["metrics"]["num_examples"] == EVAL_ROWS
    sharded = [json.loads(line) for line in (z3.out / "eval_predictions.jsonl").read_text().splitlines()]
    assert [p["index"] for p in sharded] == list(range(EVAL_ROWS))

    tokenizer = AutoTokenizer.from_pretrained(assets)
    model = AutoModelForCausalLM.from_pretrained(assets, dtype=torch.float32)
    trained = load_weights(z3)
    with torch.no_grad():
        named = dict(model.named_parameters())  # tied embeddings: lm_head is not a parameter of its own
        assert sorted(named) == sorted(trained)
        for name, param in named.items():
            param.copy_(trained[name])
    data = json.loads((Path(assets) / "data.json").read_text())
    trie = ItemTrie.from_catalog(ItemCatalog.from_titles(data["titles"]), tokenizer)
    single_file = z3.out / "single_process_predictions.jsonl"
    single = evaluate_ranking(model, tokenizer, data["train"][:EVAL_ROWS], trie, num_beams=EVAL_BEAMS, batch_size=2,
                              predictions_file=single_file, show_progress=False)
    assert single == e0["metrics"]
    for a, b in zip(sharded, (json.loads(line) for line in single_file.read_text().splitlines())):
        assert a["predictions"] == b["predictions"] and a["target_rank"] == b["target_rank"], (a, b)
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)
