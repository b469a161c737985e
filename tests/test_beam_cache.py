"""The shared-prompt beam-search cache: same states and same beams as HF's default cache, less copying."""

from __future__ import annotations

import pytest
import torch
from rere_test_utils import CATALOG_TITLES, make_prompt
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

from trl_rere.decoding import SharedPromptLayer, beam_search_cache
from trl_rere.catalog import ItemCatalog
from trl_rere.decoding import generate_beams, left_pad, tokenize_prompts
from trl_rere.trie import ItemTrie


PROMPTS, BEAMS, HEADS, DIM = 3, 4, 2, 5


def grouped_states(prompt_len: int, generated: int, seed: int = 0) -> torch.Tensor:
    """(prompts*beams, heads, prompt_len + generated, dim): prompt positions equal within a prompt's beams."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randn(PROMPTS, HEADS, prompt_len, DIM, generator=g).repeat_interleave(BEAMS, 0)
    return torch.cat([prompt, torch.randn(PROMPTS * BEAMS, HEADS, generated, DIM, generator=g)], dim=2)


def within_group_beam_idx(seed: int) -> torch.Tensor:
    """What HF beam search passes to `reorder_cache`: each row takes a row of the same prompt."""
    g = torch.Generator().manual_seed(seed)
    beams = torch.randint(0, BEAMS, (PROMPTS, BEAMS), generator=g)
    return (beams + torch.arange(PROMPTS).unsqueeze(1) * BEAMS).view(-1)


def plain_layer(keys: torch.Tensor, values: torch.Tensor) -> DynamicLayer:
    layer = DynamicLayer()
    layer.update(keys.clone(), values.clone())
    return layer


def test_updates_and_reorders_match_the_default_layer():
    keys, values = grouped_states(7, 0), grouped_states(7, 0, seed=1)
    shared, plain = SharedPromptLayer(keys, values, capacity=3), plain_layer(keys, values)
    g = torch.Generator().manual_seed(2)
    for step in range(6):  # 6 > capacity 3: the buffers grow instead of failing
        new_k, new_v = (torch.randn(PROMPTS * BEAMS, HEADS, 1, DIM, generator=g) for _ in range(2))
        out = shared.update(new_k, new_v)
        ref = plain.update(new_k, new_v)
        assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
        beam_idx = within_group_beam_idx(step)
        shared.reorder_cache(beam_idx)
        plain.reorder_cache(beam_idx)
        assert torch.equal(shared.keys, plain.keys) and torch.equal(shared.values, plain.values)
        assert shared.get_seq_length() == plain.get_seq_length() == 8 + step
    assert shared.prompt_length == 7


def test_prompt_positions_are_not_copied_by_a_reorder():
    keys = grouped_states(5, 0)
    layer = SharedPromptLayer(keys, keys.clone(), capacity=4)
    for step in range(2):  # both buffer pairs: a reorder writes the generated positions into the other one
        layer.update(torch.randn(PROMPTS * BEAMS, HEADS, 1, DIM), torch.randn(PROMPTS * BEAMS, HEADS, 1, DIM))
        # poison one row's prompt part: a reorder that copied prompt positions would spread it to other rows
        layer.keys[0, :, :5] = float("nan")
        layer.reorder_cache(torch.zeros(PROMPTS * BEAMS, dtype=torch.long))
        assert not torch.isnan(layer.keys[1:, :, :5]).any()
        assert torch.equal(layer.keys[1:, :, :5], keys[1:])
        generated = layer.keys[:, :, 5:]
        assert torch.equal(generated, generated[:1].expand_as(generated))
    assert torch.isnan(layer.keys[0, :, :5]).all()  # back on the first pair, whose row 0 was poisoned


@pytest.mark.parametrize("operation", ["select", "repeat", "crop"])
def test_row_operations_fall_back_to_full_reorders(operation):
    keys, values = grouped_states(4, 2), grouped_states(4, 2, seed=3)
    shared, plain = SharedPromptLayer(keys, values, capacity=2), plain_layer(keys, values)
    if operation == "select":  # rows of different prompts can now share a beam group
        args = ("batch_select_indices", torch.tensor([0, 5, 9, 2, 11, 6, 1, 3, 4, 7, 8, 10]))
    elif operation == "repeat":
        args = ("batch_repeat_interleave", 2)
    else:
        args = ("crop", -1)
    for layer in (shared, plain):
        getattr(layer, args[0])(args[1])
    assert shared.prompt_length == 0 and torch.equal(shared.keys, plain.keys)
    rows = shared.keys.shape[0]
    beam_idx = torch.randperm(rows, generator=torch.Generator().manual_seed(4))  # across groups: must still be exact
    new = torch.randn(rows, HEADS, 1, DIM)
    for layer in (shared, plain):
        layer.update(new, new)
        layer.reorder_cache(beam_idx)
    assert torch.equal(shared.keys, plain.keys) and torch.equal(shared.values, plain.values)


def test_reset_layer_starts_over():
    layer = SharedPromptLayer(grouped_states(4, 0), grouped_states(4, 0), capacity=2)
    layer.reset()
    assert layer.get_seq_length() == 0
    fresh_k, fresh_v = torch.randn(PROMPTS * BEAMS, HEADS, 3, DIM), torch.randn(PROMPTS * BEAMS, HEADS, 3, DIM)
    keys, values = layer.update(fresh_k, fresh_v)
    assert torch.equal(keys, fresh_k) and torch.equal(values, fresh_v) and layer.prompt_length == 0


def test_other_caches_are_left_alone():
    assert beam_search_cache(None, 4) is None
    empty = DynamicCache()
    assert beam_search_cache(empty, 4) is empty
    sliding = DynamicCache()
    sliding.layers = [DynamicSlidingWindowLayer(sliding_window=8)]
    sliding.layers[0].update(torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4))
    assert beam_search_cache(sliding, 4) is sliding
    full = DynamicCache()
    full.update(torch.ones(2, 1, 3, 4), torch.ones(2, 1, 3, 4), layer_idx=0)
    converted = beam_search_cache(full, 4)
    assert type(converted) is DynamicCache and isinstance(converted.layers[0], SharedPromptLayer)
    assert converted.get_seq_length() == 3 and full.layers[0].keys.shape[-2] == 3  # the original is untouched


def test_generate_beams_gives_the_same_beams_with_either_cache(tokenizer, tiny_model):
    catalog = ItemCatalog.from_titles(CATALOG_TITLES)
    trie = ItemTrie.from_catalog(catalog, tokenizer)
    prompts = [make_prompt(CATALOG_TITLES[:2]), make_prompt(CATALOG_TITLES[3:9]), make_prompt([CATALOG_TITLES[11]])]
    input_ids, attention_mask = left_pad(tokenize_prompts(tokenizer, prompts, trie), tokenizer.pad_token_id, "cpu")
    layer_types = []

    def record(module, args, kwargs):
        cache = kwargs.get("cache")  # transformers 5 names the cache argument `cache`
        layer_types.append(type(cache.layers[0]) if cache is not None else None)

    # a hook, not a wrapped forward: generate() inspects forward's signature and would take another path
    hook = tiny_model.register_forward_pre_hook(record, with_kwargs=True)

    def search(**kwargs):
        layer_types.clear()
        out = generate_beams(
            tiny_model, input_ids, attention_mask, trie, num_beams=6, pad_token_id=tokenizer.pad_token_id, **kwargs
        )
        assert layer_types[0] is None  # the prompts' prefill starts the cache
        return out, set(layer_types[1:])

    try:
        plain, plain_layers = search()  # the default: HF's own layers
        shared, shared_layers = search(shared_prompt_cache=True)
    finally:
        hook.remove()
    assert plain_layers == {DynamicLayer} and shared_layers == {SharedPromptLayer}
    assert torch.equal(shared[0], plain[0])
    torch.testing.assert_close(shared[1], plain[1], rtol=0, atol=1e-5)
