"""One ReRe training run for the distributed tests: launched by `accelerate launch` (DDP, DeepSpeed ZeRO-2/3) or run
as a single process. Each rank writes what it saw and did to `<out>/results/rank<i>.json` so the test can judge the
run even when a process aborts at exit.

Usage:

    # once: tiny tokenizer + briefly SFT-ed tiny Qwen2 + synthetic catalog and dataset
    python tests/distributed/run_rere.py prepare /tmp/rere-assets
    # then, per launch
    accelerate launch --config_file tests/distributed/configs/deepspeed_zero3.yaml --main_process_port 0 \
        tests/distributed/run_rere.py train --assets /tmp/rere-assets --out /tmp/rere-z3 --max-steps 4 --save-steps 2

The data are built so that, with `shuffle_dataset=False`, 2 processes, `per_device_train_batch_size=8` and
`num_generations=4` (2 prompts per rank per step), rank 0 always gets users with long histories of long titles and
rank 1 users with a single short title: prompts of very different lengths per rank, and the SFT-ed model's beams are
long titles on rank 0 and short ones on rank 1, so the ranks' beam searches finish after different numbers of
steps. Under ZeRO-3, `generate()` must then keep the ranks in lock-step (synced_gpus) or the run hangs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic catalog and users
# ---------------------------------------------------------------------------------------------------------------------
SHORT_TITLES = [f"{c} {t}" for c in ("red", "blue", "green") for t in ("ball", "car", "kite", "doll")]
_ADJ = ["deluxe", "wooden", "magnetic", "glow in the dark", "remote control", "collectible", "solar powered"]
_NOUN = ["castle playset", "railway set", "space station", "pirate ship", "dinosaur park", "robot workshop"]
_TAIL = [
    "with knights dragons and a working drawbridge",
    "with twelve carriages and a rotating turntable",
    "with astronaut figures and a launch tower",
    "for ages eight and up",
    "with sound effects lights and a storage box",
    "limited anniversary edition",
]
LONG_TITLES = [f"{_ADJ[i % 7]} {_NOUN[i % 6]} {_TAIL[(i * 5) % 6]}" for i in range(12)]
TITLES = SHORT_TITLES + LONG_TITLES
SUFFIX = "### Response:\n"
INSTRUCTION = "Given the toys the user bought in order, predict the next one.\n"

NUM_GENERATIONS = 4
PER_DEVICE_BATCH = 8  # 2 prompts x G=4 per rank per step
WORLD = 2
PROMPTS_PER_RANK = PER_DEVICE_BATCH // NUM_GENERATIONS
EVAL_BEAMS = 6


def make_prompt(history: list[str]) -> str:
    return INSTRUCTION + "History: " + ", ".join(f'"{t}"' for t in history) + "\n" + SUFFIX


def long_user(rng: random.Random) -> dict:
    start = rng.randrange(len(LONG_TITLES))
    history = [LONG_TITLES[(start + k) % len(LONG_TITLES)] for k in range(5)]
    return {"prompt": make_prompt(history), "target": LONG_TITLES[(start + 5) % len(LONG_TITLES)], "kind": "long"}


def short_user(rng: random.Random) -> dict:
    k = rng.randrange(len(SHORT_TITLES))
    target = SHORT_TITLES[(k + 1) % len(SHORT_TITLES)]
    return {"prompt": make_prompt([SHORT_TITLES[k]]), "target": target, "kind": "short"}


def rl_rows(num_rows: int = 32) -> list[dict]:
    """Row i goes to rank (i // PROMPTS_PER_RANK) % WORLD when the dataset is not shuffled: rank 0 long users,
    rank 1 short ones."""
    rng = random.Random(1)
    rows = []
    for i in range(num_rows):
        rows.append(long_user(rng) if (i // PROMPTS_PER_RANK) % WORLD == 0 else short_user(rng))
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# prepare: tokenizer + tiny Qwen2, briefly SFT-ed so that beams depend on the user (long vs short titles)
# ---------------------------------------------------------------------------------------------------------------------
def prepare(assets: Path, sft_steps: int = 60) -> None:
    from trl_rere.testing import tiny_causal_lm, train_tokenizer

    torch.manual_seed(0)
    rng = random.Random(0)
    sft = [long_user(rng) if i % 2 == 0 else short_user(rng) for i in range(96)]
    rows = rl_rows()
    corpus = [r["prompt"] + f'"{r["target"]}"\n' for r in sft + rows] + [f'"{t}"\n' for t in TITLES]
    tokenizer = train_tokenizer(corpus, kind="bpe", vocab_size=400)
    model = tiny_causal_lm(tokenizer, hidden_size=48, num_layers=2, num_heads=2, seed=0, max_position_embeddings=512)
    # SFT on prompt -> '"target"\n<eos>' (loss on the completion only), as ReRe starts from an SFT model.
    seqs = []
    for r in sft:
        p = tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]
        c = tokenizer(SUFFIX + f'"{r["target"]}"\n', add_special_tokens=False)["input_ids"]
        c = c[len(tokenizer(SUFFIX, add_special_tokens=False)["input_ids"]) :] + [tokenizer.eos_token_id]
        seqs.append((p, c))
    width = max(len(p) + len(c) for p, c in seqs)
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id)
    labels = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, c) in enumerate(seqs):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(p + c)
        labels[i, len(p) : n] = torch.tensor(c)
        mask[i, :n] = 1
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(sft_steps):
        batch = torch.randperm(len(seqs))[:24]
        loss = model(input_ids=ids[batch], attention_mask=mask[batch], labels=labels[batch]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    assets.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(assets)
    tokenizer.save_pretrained(assets)
    (assets / "data.json").write_text(json.dumps({"titles": TITLES, "train": rows, "sft_final_loss": loss.item()}))
    print(f"prepared {assets} (SFT loss {loss.item():.3f})")


# ---------------------------------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------------------------------
def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _ensure_assets(args) -> Path:
    if args.assets:
        return Path(args.assets)
    if os.environ.get("RERE_TEST_ASSETS"):
        return Path(os.environ["RERE_TEST_ASSETS"])
    assets = Path(args.out) / "assets"
    done = assets / "data.json"
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        if not done.exists():
            prepare(assets)
    else:
        deadline = time.time() + 600
        while not done.exists():
            if time.time() > deadline:
                raise TimeoutError(f"rank {_rank()}: {done} never appeared")
            time.sleep(0.5)
        time.sleep(1.0)
    return assets


def _sharding_evidence(trainer) -> dict:
    """What this rank really holds: parameter partitions (ZeRO-3) and fp32 master partitions (ZeRO-2/3)."""
    engine = trainer.model_wrapped
    module = trainer.accelerator.unwrap_model(engine)
    params = list(module.parameters())
    info: dict = {
        "num_params": len(params),
        "total_numel": int(sum(getattr(p, "ds_numel", p.numel()) for p in params)),
        "trainable_numel": int(sum(getattr(p, "ds_numel", p.numel()) for p in params if p.requires_grad)),
        "materialized_numel": int(sum(p.numel() for p in params)),
    }
    sharded = [p for p in params if hasattr(p, "ds_tensor")]
    if sharded:
        # ZeRO-3. Before deepspeed.initialize (at the start of train()) only the parameters created under zero.Init
        # (the loaded model) are partitioned; LoRA adapters added afterwards are plain tensors until then.
        info["zero3_partitioned"] = len(sharded) == len(params)
        info["params_not_partitioned"] = [n for n, p in module.named_parameters() if not hasattr(p, "ds_tensor")]
        info["partitioned_numel"] = int(sum(p.ds_numel for p in sharded))
        info["local_partition_numel"] = int(sum(p.ds_tensor.numel() for p in sharded))
        info["params_with_full_local_copy"] = sum(int(p.ds_tensor.numel() >= p.ds_numel) for p in sharded)
        info["params_status"] = sorted({str(p.ds_status) for p in sharded})
        ref = getattr(trainer, "ref_model", None)
        if ref is not None:
            rparams = list(getattr(ref, "module", ref).parameters())
            if all(hasattr(p, "ds_tensor") for p in rparams):
                info["ref_total_numel"] = int(sum(p.ds_numel for p in rparams))
                info["ref_local_partition_numel"] = int(sum(p.ds_tensor.numel() for p in rparams))
    optimizer = getattr(engine, "optimizer", None)
    for attr in ("fp32_partitioned_groups_flat", "single_partition_of_fp32_groups"):  # ZeRO-3, ZeRO-1/2
        groups = getattr(optimizer, attr, None)
        if groups:
            info["fp32_master_attr"] = attr
            info["fp32_master_local_numel"] = int(sum(t.numel() for t in groups))
    return info


def _record_generate_call(gen_calls, generate_fn, model, input_ids, attention_mask, trie, **kwargs):
    from transformers.integrations import is_deepspeed_zero3_enabled

    params = list(model.parameters())
    full = [p.numel() == getattr(p, "ds_numel", p.numel()) and p.numel() > 0 for p in params]
    forwards = [0]
    # PeftModel.generate runs the base model's forward, not its own.
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    handle = inner.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    try:
        completion_ids, scores = generate_fn(model, input_ids, attention_mask, trie, **kwargs)
    finally:
        handle.remove()
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    gen_calls.append(
        {
            "function": generate_fn.__name__,
            "prompt_width": int(input_ids.shape[1]),
            "prompt_lengths": attention_mask.sum(1).tolist(),
            "num_prompts": int(input_ids.shape[0]),
            "generated_steps": int(completion_ids.shape[1]),
            "beam_lengths": [int((row != kwargs.get("pad_token_id", -1)).sum()) for row in completion_ids],
            "forward_calls": forwards[0],
            "all_params_full_inside_generate": all(full),
            # what transformers decides when synced_gpus is not passed (the forward counts show its effect)
            "synced_gpus": bool(is_deepspeed_zero3_enabled() and world > 1),
        }
    )
    return completion_ids, scores


def _gathered_state_dict(trainer, stage: int) -> dict[str, torch.Tensor]:
    """Full fp32 weights at the end of training (collective under ZeRO-3: every rank must call it)."""
    module = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    named = list(module.named_parameters())
    if stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
            return {n: p.detach().float().cpu().clone() for n, p in named}
    return {n: p.detach().float().cpu().clone() for n, p in named}


def train(args) -> None:
    from datasets import Dataset

    import trl_rere.decoding.hf_generate as sampling_module
    from trl_rere import ReReConfig, ReReTrainer

    assets = _ensure_assets(args)
    data = json.loads((assets / "data.json").read_text())
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    rank = _rank()
    started = time.time()

    # -- record what every generate() call saw ---------------------------------------------------------------------
    gen_calls: list[dict] = []

    def recording(generate_fn):
        """Wraps the trainer's group generator (beam search or trie sampling) to record each call."""

        def recorded(model, input_ids, attention_mask, trie, **kwargs):
            return _record_generate_call(gen_calls, generate_fn, model, input_ids, attention_mask, trie, **kwargs)

        return recorded

    # the HFGenerate backend looks these up in trl_rere.decoding.hf_generate at call time
    sampling_module.generate_beams = recording(sampling_module.generate_beams)
    sampling_module.sample_from_trie = recording(sampling_module.sample_from_trie)

    # which scoring path ran: the trainer looks group_log_probs up in trl_rere.trainer at call time
    import trl_rere.trainer as trainer_module

    shared_scoring_calls: list[dict] = []
    real_group_log_probs = trainer_module.group_log_probs

    def counted_group_log_probs(model, input_ids, *a, **k):
        shared_scoring_calls.append({"rows": int(input_ids.size(0)), "grad": torch.is_grad_enabled(),
                                     "model": type(model).__name__})
        return real_group_log_probs(model, input_ids, *a, **k)

    trainer_module.group_log_probs = counted_group_log_probs

    groups_seen: list[dict] = []
    catalog_titles = set(data["titles"])

    class RecordingReReTrainer(ReReTrainer):
        def rollout(self, prompts, trainer=None):
            fields = super().rollout(prompts, trainer)
            g = NUM_GENERATIONS
            targets = [r["target"] for r in self._rows]
            for start in range(0, len(fields["beam_title"]), g):
                titles = fields["beam_title"][start : start + g]
                groups_seen.append(
                    {
                        "step": self.state.global_step,
                        "prompt": self.tokenizer.decode(fields["prompt_ids"][start]),
                        "prompt_tokens": len(fields["prompt_ids"][start]),
                        "target": targets[start],
                        "titles": titles,
                        "ranks": fields["beam_rank"][start : start + g],
                        "scores": fields["beam_score"][start : start + g],
                        "valid": all(t in catalog_titles for t in titles),
                        "distinct": len(set(titles)) == len(titles),
                        # the trie's guarantee: each completion is exactly one catalog item's tokens, EOS included
                        "on_trie": all(self.trie.lookup(c) >= 0 for c in fields["completion_ids"][start : start + g]),
                        "completions": [self.tokenizer.decode(c) for c in fields["completion_ids"][start : start + g]],
                    }
                )
            return fields

    config = ReReConfig(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=PER_DEVICE_BATCH,
        num_generations=NUM_GENERATIONS,
        gradient_accumulation_steps=1,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        logging_steps=1,
        save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or 500,
        save_only_model=False,
        shuffle_dataset=False,
        seed=42,
        data_seed=42,
        bf16=False,
        fp16=False,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        ds3_gather_for_generation=not args.no_ds3_gather,
        dataloader_num_workers=0,
        sampling_strategy=args.strategy,
        shared_prompt_logprobs=args.shared_prompt_logprobs,
        # the shared prompt pass needs its KV cache, which gradient checkpointing drops (ReReConfig refuses both)
        **({"activation_checkpointing": False} if args.shared_prompt_logprobs else {}),
    )

    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                 task_type="CAUSAL_LM")

    from transformers import AutoTokenizer, TrainerCallback

    lr_trace: list[dict] = []

    class LearningRateTrace(TrainerCallback):
        """The learning rate the optimizer really uses in each step (what a resumed run must reproduce)."""

        def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            lr_trace.append(
                {
                    "step": state.global_step + 1,
                    "lr_used": optimizer.param_groups[0]["lr"] if optimizer is not None else None,
                    "scheduler_last_epoch": getattr(getattr(lr_scheduler, "scheduler", lr_scheduler), "last_epoch",
                                                    None),
                }
            )

    tokenizer = AutoTokenizer.from_pretrained(assets)
    trainer = RecordingReReTrainer(
        model=str(assets),
        args=config,
        train_dataset=Dataset.from_list(data["train"]),
        catalog=data["titles"],
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[LearningRateTrace()],
    )
    acc = trainer.accelerator
    plugin = acc.state.deepspeed_plugin
    stage = int(plugin.zero_stage) if plugin is not None else 0
    init_time = time.time() - started
    sharding_before = _sharding_evidence(trainer) if stage else None

    train_output = trainer.train(resume_from_checkpoint=args.resume)

    sharding_after = _sharding_evidence(trainer)
    ranking_eval = None
    if args.eval_rows:
        # the trained (under ZeRO-3: still sharded) model, each rank a strided shard of the rows, as a user would
        from trl_rere.evaluation import evaluate_ranking

        eval_started = time.time()
        metrics = evaluate_ranking(
            trainer.model_wrapped, tokenizer, Dataset.from_list(data["train"][: args.eval_rows]),
            trainer.trie, num_beams=EVAL_BEAMS, batch_size=2,
            predictions_file=out / "eval_predictions.jsonl", accelerator=trainer.accelerator, show_progress=False,
        )  # fmt: skip
        ranking_eval = {"metrics": metrics, "seconds": round(time.time() - eval_started, 2)}
    weights = _gathered_state_dict(trainer, stage)
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].numpy().tobytes())
    if args.dump_weights and acc.is_main_process:
        torch.save(weights, out / "final_weights.pt")

    engine = trainer.model_wrapped
    result = {
        "ok": True,
        "rank": rank,
        "process_index": acc.process_index,
        "num_processes": acc.num_processes,
        "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
        "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        "distributed_type": str(acc.distributed_type),
        "zero_stage": stage,
        "engine_zero_stage": (
            int(engine.zero_optimization_stage()) if hasattr(engine, "zero_optimization_stage") else None
        ),
        "engine_class": type(engine).__name__,
        "lora": args.lora,
        "ds3_gather_for_generation": config.ds3_gather_for_generation,
        "resumed_from": args.resume,
        "sharding_before_train": sharding_before,
        "sharding_after_train": sharding_after,
        "generate_calls": gen_calls,
        "shared_prompt_logprobs": config.shared_prompt_logprobs,
        "shared_scoring_calls": shared_scoring_calls,
        "ranking_eval": ranking_eval,
        "sampling_strategy": config.sampling_strategy,
        "groups": groups_seen,
        "log_history": trainer.state.log_history,
        "lr_trace": lr_trace,
        "warmup_steps": trainer.args.get_warmup_steps(trainer.state.max_steps),
        "global_step": trainer.state.global_step,
        "train_loss": train_output.training_loss,
        "final_lr": trainer.lr_scheduler.get_last_lr()[0],
        "weights_sha256": digest.hexdigest(),
        "weights_numel": int(sum(w.numel() for w in weights.values())),
        "init_s": round(init_time, 2),
        "total_s": round(time.time() - started, 2),
    }
    (out / "results" / f"rank{rank}.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"[rank {rank}] done in {result['total_s']} s: stage {stage}, steps {trainer.state.global_step}", flush=True)

    acc.wait_for_everyone()
    del trainer
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="build the tiny tokenizer, SFT-ed model and data once")
    p.add_argument("assets")
    t = sub.add_parser("train", help="one ReReTrainer run (under accelerate launch or alone)")
    t.add_argument("--assets", default=None, help="directory from `prepare` (default: $RERE_TEST_ASSETS or build)")
    t.add_argument("--out", required=True)
    t.add_argument("--max-steps", type=int, default=3)
    t.add_argument("--save-steps", type=int, default=0)
    t.add_argument("--resume", default=None, help="checkpoint directory to resume from")
    t.add_argument("--lora", action="store_true")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--no-ds3-gather", action="store_true", help="ds3_gather_for_generation=False")
    t.add_argument("--dump-weights", action="store_true", help="rank 0 saves the gathered final weights")
    t.add_argument("--strategy", choices=("beam", "sample", "dynamic"), default="beam", help="sampling_strategy")
    t.add_argument("--shared-prompt-logprobs", action="store_true",
                   help="shared_prompt_logprobs=True: score each group's prompt once")
    t.add_argument("--eval-rows", type=int, default=0,
                   help="after training, evaluate_ranking on the first N rows across the processes")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(Path(args.assets))
    else:
        train(args)


if __name__ == "__main__":
    main()
