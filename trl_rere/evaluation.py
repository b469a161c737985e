"""Ranking evaluation: trie-constrained beam search over a test set, HR@K / NDCG@K, and a Trainer callback."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from transformers import TrainerCallback

# format_metrics_table is re-exported: examples import it from here
from .metrics import DEFAULT_KS, format_metrics_table, ranking_metrics  # noqa: F401
from .trie import ItemTrie


if TYPE_CHECKING:
    from .decoding import DecodingBackend

# -- sharding -----------------------------------------------------------------------------------------------------
def _shard_indices(n: int, rank: int, world: int) -> list[int]:
    """The examples process `rank` of `world` evaluates: a stride, so shard sizes differ by at most one."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank={rank}, world={world}")
    return list(range(rank, n, world))


def _pad_shard(indices: list[int], n: int, world: int) -> list[int]:
    """Pads a shard to `ceil(n / world)` examples by repeating its last one (example 0 for an empty shard).

    Every process must then make the same number of `generate` calls: under DeepSpeed ZeRO-3 (or FSDP) each forward
    gathers parameter shards from all ranks, so a rank that stops early leaves the others waiting forever. The padded
    results are computed and dropped. Within one call, `generate` keeps the decoding steps in step by itself
    (transformers turns `synced_gpus` on under ZeRO-3 / FSDP).
    """
    if n < 1:
        raise ValueError("cannot shard an empty dataset")
    size = -(-n // world)
    filler = indices[-1] if indices else 0
    return indices + [filler] * (size - len(indices))


# -- evaluation ---------------------------------------------------------------------------------------------------
def _column(dataset, name: str) -> list:
    if isinstance(dataset, (list, tuple)):
        try:
            return [row[name] for row in dataset]
        except (KeyError, TypeError):
            raise ValueError(f"every dataset row needs a {name!r} field") from None
    names = getattr(dataset, "column_names", None) or (list(dataset) if isinstance(dataset, dict) else [])
    if name not in names:
        raise ValueError(f"the dataset has no {name!r} column (columns: {names})")
    return list(dataset[name])


def _unwrap(model, accelerator):
    if accelerator is not None and hasattr(accelerator, "unwrap_model"):
        return accelerator.unwrap_model(model)
    # DDP / DeepSpeed engines keep the model under .module and have no generate().
    while not hasattr(model, "generate") and hasattr(model, "module"):
        model = model.module
    return model


def evaluate_ranking(
    model,
    tokenizer,
    dataset,
    trie: ItemTrie,
    num_beams: int = 50,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 8,
    predictions_file: str | os.PathLike | None = None,
    accelerator=None,
    show_progress: bool = True,
    shared_prompt_cache: bool = False,
    return_predictions: bool = False,
    backend: DecodingBackend | None = None,
) -> dict[str, float] | tuple[dict[str, float], list[dict]]:
    """Ranks the catalog for every prompt of `dataset` with trie-constrained beam search and scores the targets.

    For each row, `num_beams` beams (length_penalty 0) give up to `num_beams` distinct titles, best first; the
    target's rank is the position of the beam whose title equals the row's `target`. Returns `HR@K` and `NDCG@K`
    for each K in `ks` (see `ranking_metrics`) and `num_examples`.

    `predictions_file`, if given, receives one JSON line per row: `index`, `user_id` (when the dataset has it),
    `target`, `target_rank` (null when absent), `predictions` (titles) and `scores` (summed token log-probs).
    `return_predictions=True` returns `(metrics, rows)` instead: one dict per row, in dataset order, with `index`,
    `target_rank`, `predictions` and `scores` (for per-user statistics without a file).

    With an `accelerator` (`accelerate.Accelerator` or `PartialState`) running several processes, each process
    evaluates a strided shard, the ranks are gathered once, and every process returns the same metrics; only the main
    process writes `predictions_file`. Shards are padded so that all processes call `generate` equally often, which
    DeepSpeed ZeRO-3 and FSDP require. `shared_prompt_cache` is `DecodingOptions`' (opt-in; a CPU-side speed-up);
    `backend` is the `DecodingBackend` that runs the search (default `HFGenerate`).

    Example:
    ```python
    >>> from trl_rere import ItemTrie
    >>> from trl_rere.data import synthetic_catalog_dataset
    >>> from trl_rere.evaluation import evaluate_ranking
    >>> from trl_rere.testing import tiny_causal_lm, train_tokenizer
    >>> catalog, test_dataset = synthetic_catalog_dataset(num_items=16, num_users=6)
    >>> tokenizer = train_tokenizer(list(catalog.titles) + list(test_dataset["prompt"]))
    >>> model, trie = tiny_causal_lm(tokenizer), ItemTrie.from_catalog(catalog, tokenizer)
    >>> metrics = evaluate_ranking(model, tokenizer, test_dataset, trie, num_beams=10, ks=(1, 10),
    ...                            predictions_file="preds.jsonl", show_progress=False)
    >>> sorted(metrics), metrics["num_examples"], 0 <= metrics["NDCG@10"] <= metrics["HR@10"] <= 1
    (['HR@1', 'HR@10', 'NDCG@1', 'NDCG@10', 'num_examples'], 6, True)
    ```
    """
    # the decoding stack is heavy; import when evaluating
    from tqdm.auto import tqdm

    from .decoding import DecodingOptions, beam_search, eval_mode, tokenize_prompts

    if num_beams < 1:
        raise ValueError(f"num_beams must be positive, got {num_beams}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    ks = tuple(ks)
    ranking_metrics([None], ks)  # validates ks before any generation
    prompts = _column(dataset, "prompt")
    targets = _column(dataset, "target")
    try:
        user_ids = _column(dataset, "user_id")
    except ValueError:
        user_ids = None
    n = len(prompts)
    if n == 0:
        raise ValueError("the evaluation dataset is empty")
    if trie.catalog is not None:
        absent = [i for i, t in enumerate(targets) if t not in trie.catalog]
        if absent:
            warnings.warn(
                f"{len(absent)} of {n} targets are not catalog titles and count as misses (e.g. row {absent[0]}: "
                f"{targets[absent[0]]!r})",
                stacklevel=2,
            )

    world = getattr(accelerator, "num_processes", 1) if accelerator is not None else 1
    rank = getattr(accelerator, "process_index", 0) if accelerator is not None else 0
    is_main = getattr(accelerator, "is_main_process", True) if accelerator is not None else True
    own = _shard_indices(n, rank, world)
    work = _pad_shard(own, n, world) if world > 1 else own
    keep_predictions = predictions_file is not None or return_predictions

    # Each prompt is tokenized and checked once, before any generation; the model is put in eval mode once.
    prompt_ids = tokenize_prompts(tokenizer, [prompts[i] for i in work], trie)
    options = DecodingOptions(pad_token_id=tokenizer.pad_token_id, shared_prompt_cache=shared_prompt_cache)
    model = _unwrap(model, accelerator)
    records = []
    batches = range(0, len(work), batch_size)
    with eval_mode(model):
        for start in tqdm(batches, desc="Ranking eval", disable=not (show_progress and is_main), leave=False):
            chunk = work[start : start + batch_size]
            batch = prompt_ids[start : start + batch_size]
            results = beam_search(model, batch, trie, num_beams, num_beams, options, backend)
            for offset, (i, beams) in enumerate(zip(chunk, results)):
                if start + offset >= len(own):
                    continue  # padding
                titles = [b.title for b in beams]
                target_rank = titles.index(targets[i]) if targets[i] in titles else None
                record = {"index": i, "target_rank": target_rank}
                if keep_predictions:
                    record["predictions"] = titles
                    record["scores"] = [float(b.score) for b in beams]
                records.append(record)

    if world > 1:
        from accelerate.utils import gather_object

        records = gather_object(records)
    records.sort(key=lambda r: r["index"])
    if len(records) != n:
        raise RuntimeError(f"gathered {len(records)} results for {n} examples")

    metrics = ranking_metrics([r["target_rank"] for r in records], ks)
    metrics["num_examples"] = n
    if predictions_file is not None and is_main:
        _write_predictions(predictions_file, records, targets, user_ids)
    return (metrics, records) if return_predictions else metrics


def _write_predictions(path, records, targets, user_ids) -> None:
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            i = r["index"]
            line = {"index": i}
            if user_ids is not None:
                line["user_id"] = user_ids[i]
            line.update(target=targets[i], target_rank=r["target_rank"])
            line.update(predictions=r["predictions"], scores=r["scores"])
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


# -- Trainer callback ---------------------------------------------------------------------------------------------
class RankingEvalCallback(TrainerCallback):
    """Runs `evaluate_ranking` during training and logs `eval_HR@K` / `eval_NDCG@K`.

    It evaluates on every `on_evaluate` event, so set `eval_strategy="steps"` (and `eval_steps`) in the training
    arguments; the metrics are added to the Trainer's evaluation metrics, which makes
    `metric_for_best_model="eval_NDCG@10"` and `EarlyStoppingCallback` work (add this callback before those). With
    `eval_steps` set here it also evaluates every `eval_steps` optimizer steps, independently of the Trainer's own
    evaluation.

    Callbacks do not receive the trainer, and the Trainer logs evaluation metrics before `on_evaluate` runs. Attach
    the trainer with `callback.attach(trainer)` so that the results also reach the loggers (`report_to`); without it
    they go to `state.log_history` (saved in `trainer_state.json`) only. Logging goes through the base
    `transformers.Trainer.log`, because TRL's `GRPOTrainer.log` flushes its running training averages on every call.

    Example:
    ```python
    >>> from trl_rere import ReReConfig, ReReTrainer
    >>> from trl_rere.data import synthetic_catalog_dataset
    >>> from trl_rere.evaluation import RankingEvalCallback
    >>> from trl_rere.testing import tiny_causal_lm, train_tokenizer
    >>> catalog, dataset = synthetic_catalog_dataset(num_items=16, num_users=12)
    >>> tokenizer = train_tokenizer(list(catalog.titles) + list(dataset["prompt"]))
    >>> tiny_causal_lm(tokenizer).save_pretrained("tiny-model")
    >>> args = ReReConfig(output_dir="rere-tiny", num_generations=4, per_device_train_batch_size=8, max_steps=2,
    ...                   report_to=[], use_cpu=True, disable_tqdm=True)
    >>> trainer = ReReTrainer(model="tiny-model", args=args, train_dataset=dataset.select(range(8)),
    ...                       processing_class=tokenizer, catalog=catalog)
    >>> callback = RankingEvalCallback(dataset.select(range(8, 12)), trainer.trie, tokenizer, num_beams=8,
    ...                                ks=(1, 5), eval_steps=1).attach(trainer)
    >>> trainer.train().global_step  # logs eval_HR@K / eval_NDCG@K after every step
    {...}
    2
    >>> sorted(k for k in callback.last_metrics if k.startswith("eval_HR"))
    ['eval_HR@1', 'eval_HR@5']
    ```
    """

    def __init__(
        self,
        eval_dataset,
        trie: ItemTrie,
        tokenizer,
        num_beams: int = 50,
        ks: Sequence[int] = DEFAULT_KS,
        eval_steps: int | None = None,
        max_examples: int | None = None,
        batch_size: int = 8,
        metric_prefix: str = "eval_",
        predictions_dir: str | os.PathLike | None = None,
        accelerator=None,
    ):
        if eval_steps is not None and (not isinstance(eval_steps, int) or eval_steps < 1):
            raise ValueError(f"eval_steps must be a positive integer or None, got {eval_steps!r}")
        if max_examples is not None and max_examples < 1:
            raise ValueError(f"max_examples must be positive or None, got {max_examples!r}")
        ranking_metrics([None], ks)
        if max_examples is not None and len(eval_dataset) > max_examples:
            # The first rows, not a sample: the same users at every evaluation keep the curve comparable.
            if hasattr(eval_dataset, "select"):
                eval_dataset = eval_dataset.select(range(max_examples))
            else:
                eval_dataset = eval_dataset[:max_examples]
        self.eval_dataset = eval_dataset
        self.trie = trie
        self.tokenizer = tokenizer
        self.num_beams = num_beams
        self.ks = tuple(ks)
        self.eval_steps = eval_steps
        self.batch_size = batch_size
        self.metric_prefix = metric_prefix
        self.predictions_dir = predictions_dir
        self.accelerator = accelerator
        self.trainer = None
        self.last_metrics: dict[str, float] | None = None
        self._last_step: int | None = None

    def attach(self, trainer) -> RankingEvalCallback:
        """Lets the callback log through `trainer` (and registers it if the trainer does not have it yet)."""
        self.trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def _accelerator(self):
        if self.accelerator is not None:
            return self.accelerator
        if self.trainer is not None and getattr(self.trainer, "accelerator", None) is not None:
            return self.trainer.accelerator
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            from accelerate import PartialState

            return PartialState()
        return None

    def evaluate(self, model, step: int | None = None) -> dict[str, float]:
        """Evaluates `model` now and returns the prefixed metrics (also kept in `last_metrics`)."""
        predictions_file = None
        if self.predictions_dir is not None:
            name = f"ranking-step-{step}.jsonl" if step is not None else "ranking.jsonl"
            predictions_file = os.path.join(os.fspath(self.predictions_dir), name)
        raw = evaluate_ranking(
            model,
            self.tokenizer,
            self.eval_dataset,
            self.trie,
            num_beams=self.num_beams,
            ks=self.ks,
            batch_size=self.batch_size,
            predictions_file=predictions_file,
            accelerator=self._accelerator(),
            show_progress=False,
        )
        self.last_metrics = {f"{self.metric_prefix}{k}": v for k, v in raw.items()}
        return dict(self.last_metrics)

    def _log(self, state, logs: dict[str, float]) -> None:
        if self.trainer is not None:
            # Logging from on_step_end must not cancel the trainer's own log of this step: its loss (and GRPO's reward
            # metrics) would be merged into the next step's entry.
            from ._compat import log_without_flush

            log_without_flush(self.trainer, logs)
        else:
            entry = dict(logs)
            if state.epoch is not None:
                entry["epoch"] = state.epoch
            entry["step"] = state.global_step
            state.log_history.append(entry)

    def _run(self, state, model) -> dict[str, float] | None:
        if model is None:
            raise ValueError("RankingEvalCallback got no model from the Trainer")
        # Evaluating twice at one step (several eval datasets, or eval_steps and eval_strategy agreeing) is wasted.
        if self._last_step == state.global_step and self.last_metrics is not None:
            return None
        metrics = self.evaluate(model, step=state.global_step)
        self._last_step = state.global_step
        self._log(state, metrics)
        return metrics

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        self._run(state, model)
        if metrics is not None and self.last_metrics is not None:
            metrics.update(self.last_metrics)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.eval_steps is not None and state.global_step > 0 and state.global_step % self.eval_steps == 0:
            self._run(state, model)
