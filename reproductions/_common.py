"""What the reproductions share: the rows they compare, the SFT checkpoint cache, the lean SFT loop, the evaluation
subset and one evaluation run, the statistics of their tables (per-user NDCG, mean and standard error, paired
differences) and the RL curve; the hardware line and the CPU shims come from `benchmarks/`.

The scripts import it as `reproductions._common` (the repository root is put on `sys.path` by each script, and is the
test runner's first path entry). Everything the library does (prefix pairs, prompts, completion templates, ranking and
its metrics) is called from `trl_rere`, not written again here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from benchmarks._cpu import install_cpu_shims  # noqa: E402, F401  (the reproductions' CPU shims, re-exported)
from benchmarks._results import hardware  # noqa: E402
from trl_rere.evaluation import evaluate_ranking  # noqa: E402
from trl_rere.metrics import DEFAULT_KS, ranking_metrics  # noqa: E402
from trl_rere.item_format import get_item_format  # noqa: E402
from trl_rere.testing import tiny_causal_lm  # noqa: E402


WORK_DIR = REPO / "reproductions" / "_work"
CATEGORY = "Industrial_and_Scientific"

# name -> (label, sampling_strategy, rewards); every row starts from the same SFT checkpoint
ROWS = {
    "sft": ("1. SFT only", None, None),
    "sft_ce": ("1b. SFT + cross-entropy on the RL prompts (control)", "ce", None),
    "grpo_sample": ("2. SFT + GRPO, trie-constrained sampling, rule reward", "sample", ["rule"]),
    "beam_rule": ("3. SFT + ReRe sampling (beam), rule reward", "beam", ["rule"]),
    "rere": ("4. SFT + ReRe (beam, rule + ranking)", "beam", ["rule", "ranking"]),
    "dynamic": ("5. SFT + dynamic sampling, rule + ranking", "dynamic", ["rule", "ranking"]),
}


def quiet_torch(threads: int) -> None:
    """Sets torch's CPU threads and silences the libraries' user warnings and transformers' info logs, which would
    drown the scripts' own progress lines."""
    import warnings

    import transformers

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    transformers.logging.set_verbosity_error()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def config_key(d) -> str:
    """A short hash of a JSON-able configuration: the name of the cache entry computed with it."""
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


# -- SFT --------------------------------------------------------------------------------------------------------------
def cached_sft(work: Path, sft_cfg: dict, fresh: bool) -> tuple[Path, dict | None]:
    """`(folder, info)` of the SFT checkpoint trained with `sft_cfg`; `info` is None when it has to be trained."""
    sft_dir = work / f"sft-{config_key(sft_cfg)}"
    info_path = sft_dir / "sft_info.json"
    if info_path.exists() and not fresh:
        info = json.loads(info_path.read_text())
        log(f"SFT: reusing {sft_dir.name} (trained in {info['train_s']:.0f}s)")
        return sft_dir, info
    return sft_dir, None


def new_sft_model(tok, a, seed: int | None = None):
    """The randomly initialised model SFT starts from, sized by the command line (seed: `a.sft_seed` unless given)."""
    seed = a.sft_seed if seed is None else seed
    return tiny_causal_lm(tok, hidden_size=a.hidden, num_layers=a.layers, num_heads=a.heads, seed=seed,
                          intermediate_size=a.intermediate, attn_implementation="sdpa").to(a.device)


def save_sft(model, tok, sft_dir: Path, info: dict) -> None:
    """Saves the SFT checkpoint and its info, which `cached_sft` finds again."""
    model.config.use_cache = True
    model.to("cpu").save_pretrained(str(sft_dir))
    tok.save_pretrained(sft_dir)
    (sft_dir / "sft_info.json").write_text(json.dumps(info))


def encode_examples(tok, data, item_format: str = "title") -> list[tuple[list[int], int]]:
    """(prompt + the item format's completion + EOS token ids, prompt length) per row: what the SFT loss is computed
    on. The completion is `get_item_format(item_format).render(target)`, as the trie and TRL tokenize it, or the
    `completion` column of prompt-completion rows (`trl_rere.data.sft_dataset`, `mix_sft_tasks`)."""
    fmt = get_item_format(item_format)
    prompts = tok(list(data["prompt"]))["input_ids"]
    completions = (data["completion"] if "completion" in data.column_names  # prompt-completion rows (mix_sft_tasks)
                   else [fmt.render(t) for t in data["target"]])
    fulls = tok([p + c for p, c in zip(data["prompt"], completions)])["input_ids"]
    examples = []
    for prompt, p_ids, full in zip(data["prompt"], prompts, fulls):
        if full[: len(p_ids)] != p_ids:
            raise ValueError(f"prompt/completion boundary is unstable for {prompt[-40:]!r}")
        examples.append((full + [tok.eos_token_id], len(p_ids)))
    return examples


def completion_loss(model, examples, batch, pad: int) -> torch.Tensor:
    """Mean cross-entropy over the completion tokens of `examples[i] for i in batch`; the LM head is applied only
    where a completion token is predicted."""
    width = max(len(examples[i][0]) for i in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    sel_rows, sel_pos, labels = [], [], []
    for r, i in enumerate(batch):
        seq, plen = examples[i]
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
        for j in range(plen, len(seq)):  # hidden state at j-1 predicts token j
            sel_rows.append(r)
            sel_pos.append(j - 1)
            labels.append(seq[j])
    device = model.device
    hidden = model.model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    logits = model.lm_head(hidden[torch.tensor(sel_rows, device=device), torch.tensor(sel_pos, device=device)])
    return torch.nn.functional.cross_entropy(logits.float(), torch.tensor(labels, device=device))


@torch.no_grad()
def heldout_loss(model, examples, pad: int, batch_size: int = 64) -> float:
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    total, n = 0.0, 0
    for k in range(0, len(order), batch_size):
        batch = order[k : k + batch_size]
        tokens = sum(len(examples[i][0]) - examples[i][1] for i in batch)
        total += completion_loss(model, examples, batch, pad).item() * tokens
        n += tokens
    model.train(was_training)
    return total / n


def lean_sft(model, tok, examples, *, epochs: float, lr: float, batch_size: int, seed: int, warmup: float = 0.05,
             weight_decay: float = 0.01, max_grad_norm: float = 1.0, heldout=None,
             log_every: int = 50) -> tuple[int, list, list]:
    """Supervised fine-tuning on prompt -> completion + EOS (`encode_examples`) with the loss on the completion only.

    The objective of TRL's `SFTTrainer` with `completion_only_loss=True`, written as a plain loop because on a CPU
    that trainer costs about 3x more per step here: it computes full-vocabulary logits (and their entropy) at every
    prompt position, while this loop applies the LM head only where a completion token is predicted. Batches hold
    examples of similar length (titles run from a few to ~70 tokens), in a seeded random order. With `heldout`
    (encoded examples the model does not train on), their completion loss is measured at the end of every epoch and
    the weights of the best epoch are kept (early stopping); the returned step count is that epoch's.
    """
    from transformers import get_cosine_schedule_with_warmup

    rng = random.Random(seed)
    B = batch_size
    per_epoch = math.ceil(len(examples) / B)
    total = max(1, int(per_epoch * epochs))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(warmup * total), total)  # ceil, as TRL's warmup_ratio
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model.train()
    losses, heldout_curve, window, step, best = [], [], [], 0, None
    while step < total:
        order = list(range(len(examples)))
        rng.shuffle(order)
        batches = []
        for m in range(0, len(order), 50 * B):  # sort megabatches of 50 batches by length
            mega = sorted(order[m : m + 50 * B], key=lambda i: len(examples[i][0]))
            batches += [mega[i : i + B] for i in range(0, len(mega), B)]
        rng.shuffle(batches)
        for batch in batches:
            if step >= total:
                break
            loss = completion_loss(model, examples, batch, pad)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            window.append(loss.item())
            if step % log_every == 0 or step == total:
                losses.append((step, round(statistics.fmean(window), 4)))
                window = []
                log(f"  SFT step {step}/{total} loss {losses[-1][1]}")
        if heldout:
            value = heldout_loss(model, heldout, pad)
            heldout_curve.append((round(step / per_epoch, 2), round(value, 4)))
            log(f"  SFT epoch {heldout_curve[-1][0]}: held-out completion loss {heldout_curve[-1][1]}")
            if best is None or value < best[0]:
                best = (value, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
    if best is not None and best[1] != step:
        model.load_state_dict(best[2])  # early stopping: the epoch with the lowest held-out loss
        log(f"  SFT: keeping the weights of step {best[1]} (lowest held-out loss {best[0]:.4f})")
    model.eval()
    return (best[1] if best is not None else step), losses, heldout_curve


# -- data splits ------------------------------------------------------------------------------------------------------
def split_rl_pool(train, frac: float, seed: int = 0):
    """(SFT pairs, RL prompt pool): a seeded random `frac` of the pairs is held out of SFT for RL.

    RL on pairs the SFT model has trained on for several epochs mostly teaches it to trust what it memorised (in-sample
    ranking improves, held-out ranking does not); a held-out pool gives RL prompts that look like test prompts.
    """
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    n_pool = round(frac * len(train))
    if not 0 < n_pool < len(train):
        raise SystemExit(f"--heldout_frac {frac} leaves no SFT or no RL pairs out of {len(train)}")
    return train.select(sorted(order[n_pool:])), train.select(sorted(order[:n_pool]))


def eval_subset(test, n: int, dev_n: int, seed: int, split: str) -> list[int]:
    """A fixed random permutation of the test users: the first `n` are reported, the last `dev_n` are for tuning
    (disjoint from the reported ones whatever `n`, unless all users are reported)."""
    order = list(range(len(test)))
    random.Random(seed).shuffle(order)
    if split == "report":
        idx = order[:n] if n else order
        if n and n + dev_n > len(order):
            raise SystemExit(f"--eval_users {n} + --dev_users {dev_n} exceed the {len(order)} test users")
    else:
        idx = order[-dev_n:]
    return sorted(idx)


# -- evaluation and its statistics ------------------------------------------------------------------------------------
def run_eval(model, tok, data, trie, a, out_json: Path, extra: dict) -> dict:
    """Ranks `data` with `trl_rere.evaluation.evaluate_ranking` (`a.eval_beams` beams) and saves, to `out_json`,
    `extra` with the metrics, each user's target rank, the evaluation time and the hardware."""
    t0 = time.time()
    metrics, rows = evaluate_ranking(model, tok, data, trie, num_beams=a.eval_beams, ks=DEFAULT_KS,
                                     batch_size=a.eval_batch, show_progress=False, return_predictions=True)
    ranks = [row["target_rank"] for row in rows]
    result = {**extra, "metrics": metrics, "ranks": ranks, "eval_s": time.time() - t0, "hardware": hardware(a.device)}
    out_json.write_text(json.dumps(result))
    log(f"  eval {out_json.stem}: NDCG@10={metrics['NDCG@10']:.4f} HR@10={metrics['HR@10']:.4f} "
        f"HR@50={metrics['HR@50']:.4f} ({time.time() - t0:.0f}s)")
    return result


@torch.no_grad()
def catalog_ranks(model, tok, prompts, targets, trie, cap: int | None = None, chunk: int = 512) -> list[int]:
    """The exact 0-based rank of each target among all the trie's items: an item's score is the sum of its completion
    tokens' log-probabilities after the prompt (teacher-forced, normalised over the whole vocabulary, as beam search
    scores them), and the rank counts the items that score higher. Beam search with `len(trie)` beams finds this
    ranking; with fewer it may lose the target (a beam-search error), which this exposes.

    Exact, but not by scoring every item: a prefix's log-probability bounds every item under it (log-probabilities are
    at most 0), so items whose first two tokens already score below the target are never completed, and the rest are
    completed in order of that bound. With `cap`, a rank of `cap` or more is returned as `cap` as soon as `cap` items
    are found above the target. Items must have completions of one length (semantic IDs do)."""
    import copy

    from trl_rere._compat import CACHE_ARG

    items = [trie.title_token_ids(i) for i in range(len(trie))]
    if len({len(x) for x in items}) != 1 or len(items[0]) < 2:
        raise ValueError("catalog_ranks needs completions of one length, at least 2 tokens (semantic IDs)")
    index = {t: i for i, t in enumerate(trie.titles)}
    device = model.device
    tokens = torch.tensor(items, device=device)
    n_items, L = tokens.shape
    margin = 1e-4  # bounds computed in other batch shapes differ by float rounding: never prune on that
    model.eval()

    def continue_from(prompt_out, n_prompt, seqs):
        """Log-probabilities of each next token after every position of `seqs` (rows of token ids after the prompt)."""
        cache = copy.deepcopy(getattr(prompt_out, CACHE_ARG))
        cache.batch_repeat_interleave(len(seqs))
        width = seqs.shape[1]
        model_out = model(input_ids=seqs, **{CACHE_ARG: cache}, use_cache=True,
                          attention_mask=torch.ones(len(seqs), n_prompt + width, dtype=torch.long, device=device),
                          position_ids=torch.arange(n_prompt, n_prompt + width, device=device).expand(len(seqs), -1))
        return torch.log_softmax(model_out.logits.float(), -1)

    def full_scores(prompt_out, n_prompt, first, rows):
        logp = continue_from(prompt_out, n_prompt, tokens[rows, :-1])
        return first[rows] + logp.gather(-1, tokens[rows, 1:, None])[..., 0].sum(-1)

    ranks = []
    for prompt, target in zip(prompts, targets, strict=True):
        ids = torch.tensor([tok(prompt)["input_ids"]], device=device)
        out = model(input_ids=ids, use_cache=True)
        n_prompt = ids.shape[1]
        first = torch.log_softmax(out.logits[0, -1].float(), -1)[tokens[:, 0]]
        t = index[target]
        s_t = full_scores(out, n_prompt, first, torch.tensor([t], device=device))[0]
        # bound 1: the first token; bound 2: the first two (one forward per distinct first token)
        alive = torch.nonzero(first > s_t - margin)[:, 0]
        heads, inverse = torch.unique(tokens[alive, 0], return_inverse=True)
        second = continue_from(out, n_prompt, heads[:, None])[:, 0]
        bound = first[alive] + second[inverse, tokens[alive, 1]]
        keep = bound > s_t - margin
        alive, bound = alive[keep], bound[keep]
        alive = alive[torch.argsort(bound, descending=True)]
        alive = alive[alive != t]
        above = 0
        for k in range(0, len(alive), chunk):
            above += int((full_scores(out, n_prompt, first, alive[k : k + chunk]) > s_t).sum())
            if cap is not None and above >= cap:
                above = cap
                break
        ranks.append(above)
    return ranks


def mean_se(xs: list[float], clusters=None) -> tuple[float, float]:
    """Mean and its standard error; with `clusters` (one label per value, e.g. the user of each test row), the
    cluster-robust SE (CR1: rows of one user are not independent draws, so their deviations add up before squaring).

    >>> mean_se([1.0, 3.0])
    (2.0, 1.0)
    >>> mean_se([0.0, 2.0, 4.0, 6.0], clusters=["a", "a", "b", "b"])  # two clusters: the SE of two cluster means
    (3.0, 2.0)
    """
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, 0.0
    if clusters is None:
        return m, statistics.stdev(xs) / math.sqrt(len(xs))
    sums: dict = {}
    for x, c in zip(xs, clusters, strict=True):
        sums[c] = sums.get(c, 0.0) + (x - m)
    g = len(sums)
    if g < 2:
        return m, 0.0
    return m, math.sqrt(g / (g - 1) * sum(v * v for v in sums.values())) / len(xs)


def per_user_ndcg(runs, n_users: int) -> list[float]:
    """NDCG@10 of each user (`trl_rere`'s `ranking_metrics` of the user's rank), averaged over the row's seeds."""
    return [statistics.fmean(ranking_metrics([r["ranks"][u]], ks=(10,))["NDCG@10"] for r in runs)
            for u in range(n_users)]


def paired_difference(mine: list[float], theirs: list[float], clusters=None) -> tuple[float, float]:
    """Mean per-row difference and its standard error (the same rows in both, so differences are paired); with
    `clusters` (the user of each row), clustered by user (`mean_se`)."""
    return mean_se([a - b for a, b in zip(mine, theirs, strict=True)], clusters)


def metric_cells(runs, names) -> list[str]:
    """One table cell per metric: the mean over the runs (seeds), with ± half their range when there are several."""
    cells = []
    for m in names:
        vals = [r["metrics"][m] for r in runs]
        cells.append(f"{statistics.fmean(vals):.4f}" + (f" ±{(max(vals) - min(vals)) / 2:.4f}" if len(vals) > 1
                                                         else ""))
    return cells


def rl_curve(trainer) -> dict[str, list[float]]:
    """The per-step group statistics the trainer logged: reward, target in group, NDCG@10, distinct items, KL."""
    hist = [h for h in trainer.state.log_history if "reward" in h]
    keys = ("reward", "rere/target_in_group", "rere/NDCG@10", "rere/distinct_items_per_group", "kl")
    return {k: [round(h.get(k, float("nan")), 4) for h in hist] for k in keys}
