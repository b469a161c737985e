"""The paper's backbone tokenizer: Qwen2's byte-level BPE (`../shared/tokenizers/qwen2`) on the real catalogs.

The tiny tokenizers of the other tests are trained on a few titles; Qwen2's has 151,643 merges-derived tokens that
merge across the prompt/title boundary in ways a small vocabulary never does (`"\\n` is one token, so is `"Red`).
These tests check, with it, the three places where the trie's tokens must be the model's tokens:

- every title of the Industrial and Toys catalogs, tokenized after the authors' full prompt, is a trie path;
- TRL's `SFTTrainer` trains on exactly those paths (EOS included);
- a trie-constrained beam search on a model with Qwen2's 151,936-row embedding returns catalog titles, best first,
  with the scores a teacher-forced forward pass gives them.
"""

from __future__ import annotations

import random

import pytest
import torch

from trl_rere.catalog import ItemCatalog
from trl_rere.decoding import constrained_beam_search
from trl_rere.data import DEFAULT_INSTRUCTIONS, build_prompt, load_amazon, sft_dataset
from trl_rere.testing import tiny_causal_lm
from trl_rere.trie import ItemTrie


QWEN2_EMBEDDING_ROWS = 151_936  # Qwen2-0.5B's vocab_size: the tokenizer's 151,646 ids padded for the matmul


# -- data ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def industrial(data_dir):
    """The Industrial catalog and its test split's prompts (the authors' full template, max_history 10)."""
    catalog, splits = load_amazon(data_dir, "Industrial_and_Scientific", splits=("test",))
    return catalog, splits["test"]


@pytest.fixture(scope="module")
def toys_catalog(toys_info_path) -> ItemCatalog:
    return ItemCatalog.from_info_file(toys_info_path)


def toys_prompts(catalog: ItemCatalog, n: int, seed: int = 0) -> list[str]:
    """Authors' prompts over random Toys histories (the Toys interaction files are not available here): 1-10 titles
    each, a random instruction, so every kind of title also appears inside a prompt."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        history = rng.sample(catalog.titles, rng.randint(1, 10))
        prompts.append(build_prompt(history, "Toys_and_Games", instruction=rng.choice(DEFAULT_INSTRUCTIONS)))
    return prompts


def catalog_and_prompts(name: str, request) -> tuple[ItemCatalog, list[str]]:
    if name == "industrial":
        catalog, test = request.getfixturevalue("industrial")
        return catalog, list(test["prompt"])
    catalog = request.getfixturevalue("toys_catalog")
    return catalog, toys_prompts(catalog, 1000)


# -- 1. the trie has Qwen's tokens -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, num_titles", [("industrial", 3_646), ("toys", 11_198)])
def test_every_title_is_a_trie_path_after_the_full_prompt(qwen2_tokenizer, request, name, num_titles):
    """For every title: tokenize(prompt + completion) == tokenize(prompt) + its trie path without EOS, and the path
    ends in EOS and leads back to that title."""
    catalog, prompts = catalog_and_prompts(name, request)
    assert len(catalog) == num_titles
    trie = ItemTrie.from_catalog(catalog, qwen2_tokenizer)
    assert not trie.collisions  # byte-level BPE is lossless: distinct titles, distinct tokens
    eos = qwen2_tokenizer.eos_token_id

    prompt_ids = qwen2_tokenizer(prompts, add_special_tokens=False)["input_ids"]
    # each title after a different prompt, cycling through them
    pairs = [(k % len(prompts), trie.completion_template.format(title=t)) for k, t in enumerate(catalog.titles)]
    full_ids = qwen2_tokenizer([prompts[p] + c for p, c in pairs], add_special_tokens=False)["input_ids"]

    mismatched = []
    for k, ((p, _), full) in enumerate(zip(pairs, full_ids)):
        path = trie.title_token_ids(k)
        assert path[-1] == eos and eos not in path[:-1], (k, catalog.titles[k])
        assert trie.lookup(path) == k
        if full != prompt_ids[p] + path[:-1]:
            mismatched.append(catalog.titles[k])
    assert not mismatched, f"{len(mismatched)} titles tokenize differently after the prompt, e.g. {mismatched[:3]}"


def test_titles_with_tabs_and_quotes_round_trip(qwen2_tokenizer, toys_catalog):
    """The awkward Toys titles (the two with a tab, those with quotes, which Qwen can merge with the completion's own
    quotes) are among those checked above; make sure the catalog really has them, so the test above cannot pass on
    an easy subset, and that their paths decode back to the completion text."""
    titles = toys_catalog.titles
    tabs, quotes = [t for t in titles if "\t" in t], [t for t in titles if '"' in t]
    assert len(tabs) == 2 and len(quotes) > 100
    trie = ItemTrie.from_catalog(toys_catalog, qwen2_tokenizer)
    for t in tabs + quotes:
        assert qwen2_tokenizer.decode(trie.title_token_ids(toys_catalog.index(t))[:-1]) == f'"{t}"\n', t


# -- 2. SFT trains on the trie's tokens ------------------------------------------------------------------------------
def sft_rows(name: str, request, n: int = 24) -> tuple[ItemCatalog, list[str], list[str]]:
    """`n` (prompt, target) rows: Industrial test rows, or Toys prompts with random targets; half of them with a tab
    or quote in the target, where a merge across the boundary would show."""
    catalog, prompts = catalog_and_prompts(name, request)
    if name == "industrial":
        targets = list(request.getfixturevalue("industrial")[1]["target"])
    else:
        targets = random.Random(1).sample(catalog.titles, len(prompts))
    awkward = [i for i, t in enumerate(targets) if "\t" in t or '"' in t]
    rows = (awkward[: n // 2] + [i for i in range(len(targets)) if i not in set(awkward)])[:n]
    return catalog, [prompts[i] for i in rows], [targets[i] for i in rows]


@pytest.mark.parametrize("name", ["industrial", "toys"])
def test_sft_completion_tokens_are_trie_paths(qwen2_tokenizer, request, tmp_path, name):
    """TRL's SFTTrainer tokenizes `sft_dataset` rows itself (prompt and prompt + completion separately, EOS
    appended) and masks the prompt out of the labels; the tokens it trains on must be the target's trie path, EOS
    included, and the masked ones the prompt's own tokens."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    catalog, prompts, targets = sft_rows(name, request)
    trie = ItemTrie.from_catalog(catalog, qwen2_tokenizer)
    rows = sft_dataset(Dataset.from_dict({"prompt": prompts, "target": targets}))
    model = tiny_causal_lm(qwen2_tokenizer, hidden_size=16, num_layers=1, vocab_size=QWEN2_EMBEDDING_ROWS)
    args = SFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, max_length=None, dataset_num_proc=None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=qwen2_tokenizer)

    processed = trainer.train_dataset
    assert len(processed) == len(prompts)  # nothing dropped or truncated
    prompt_ids = qwen2_tokenizer(prompts, add_special_tokens=False)["input_ids"]
    for k, row in enumerate(processed):
        ids, labels = row["input_ids"], row["labels"]
        start = len(prompt_ids[k])
        assert ids[:start] == prompt_ids[k], k
        assert labels == [-100] * start + ids[start:], k  # the loss is on the completion, all of it
        assert ids[start:] == trie.title_token_ids(catalog.index(targets[k])), (k, targets[k])


# -- 3. constrained beam search at Qwen2's vocabulary size -----------------------------------------------------------
@torch.no_grad()
def teacher_forced_score(model, prompt_ids: list[int], completion_ids: list[int]) -> float:
    """Sum over the completion of the full-vocabulary log-softmax of each token, from one forward pass."""
    ids = torch.tensor([prompt_ids + completion_ids])
    logits = model(input_ids=ids, logits_to_keep=len(completion_ids) + 1).logits[0, :-1].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    return logprobs.gather(-1, torch.tensor(completion_ids).unsqueeze(-1)).sum().item()


def test_beam_search_with_qwen2_vocabulary(qwen2_tokenizer, industrial):
    catalog, test = industrial
    trie = ItemTrie.from_catalog(catalog, qwen2_tokenizer)
    model = tiny_causal_lm(qwen2_tokenizer, hidden_size=16, num_layers=2, vocab_size=QWEN2_EMBEDDING_ROWS, seed=0)
    # A random model this small gives nearly flat distributions; scale the (tied) embeddings so the beams' scores
    # differ by more than the tolerance and the order is a real one.
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(5.0)
    prompts = list(test["prompt"][:3])
    num_beams = 8
    results = constrained_beam_search(model, qwen2_tokenizer, prompts, trie, num_beams=num_beams)

    assert len(results) == len(prompts)
    for prompt, ranked in zip(prompts, results):
        assert len(ranked) == num_beams and ranked.complete
        assert len({b.title for b in ranked}) == num_beams  # distinct items
        assert [b.rank for b in ranked] == list(range(num_beams))
        scores = [b.score for b in ranked]
        assert scores == sorted(scores, reverse=True)
        prompt_ids = qwen2_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for beam in ranked:
            assert beam.title in catalog
            assert beam.token_ids == trie.title_token_ids(catalog.index(beam.title))
            assert beam.token_ids[-1] == qwen2_tokenizer.eos_token_id
            # fp32 sums of ~20 log-probs of about -12 each: 1e-4 absolute, or float32's 1e-6 relative when larger
            expected = teacher_forced_score(model, prompt_ids, beam.token_ids)
            assert beam.score == pytest.approx(expected, rel=1e-6, abs=1e-4), beam.title
        # the scores span a real range (so "sorted" and "exact" are not vacuous on a flat model)
        assert scores[0] - scores[-1] > 1e-2
