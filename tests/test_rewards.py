"""ReRe's rewards (METHOD.md section 4) and the GRPO advantages they produce (section 5).

Every expected value is computed here from the formulas, independently of `trl_rere.rewards`:
rule `r = 1[b_i == t]`; ranking `r = -w_i / Z` for a negative at beam rank i in a group that contains the target
(`w_i = 1 / log2(i + 2)`, `Z = sum_{j<G} w_j`), 0 for the target and for every member of a group without it; and
TRL's group advantage `(r - mean) / (std + 1e-4)`, with the unbiased (Bessel-corrected) std of
`trl.trainer.utils.nanstd`.
"""

import math
import os
import random

import pytest
import torch


os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from trl.trainer.utils import nanstd  # noqa: E402

from trl_rere import ItemCatalog, ReReConfig, ReReTrainer  # noqa: E402
from trl_rere.rewards import (  # noqa: E402
    collaborative_reward,
    rank_weights,
    ranking_reward,
    resolve_reward_funcs,
    rule_reward,
    semantic_reward,
)


G = 4
TITLES = ["red ball", "blue car", "green doll", "pink kite", "red car", "blue ball"]


# -- independent reference implementations -------------------------------------------------------------------------
def ref_weight(i: int) -> float:
    return 1.0 / math.log2(i + 2)


def ref_z(group_size: int) -> float:
    return sum(ref_weight(j) for j in range(group_size))


def ref_rule(titles, targets, ranks=None):
    return [
        None if ranks is not None and ranks[i] < 0 else float(t == y) for i, (t, y) in enumerate(zip(titles, targets))
    ]


def ref_ranking(titles, targets, ranks, group_ids, group_size):
    z = ref_z(group_size)
    out = []
    for i, (t, y, r, g) in enumerate(zip(titles, targets, ranks, group_ids)):
        if r < 0:
            out.append(None)
            continue
        has_target = any(titles[j] == targets[j] for j in range(len(titles)) if group_ids[j] == g)
        out.append(-ref_weight(r) / z if has_target and t != y else 0.0)
    return out


def trl_advantages(reward_columns, group_size):
    """What GRPOTrainer does with `scale_rewards="group"`, `multi_objective_aggregation="sum_then_normalize"`, unit
    reward weights: None -> NaN, nansum over functions (all-None rows stay NaN), per-group nanmean / nanstd,
    `(r - mean) / (std + 1e-4)`, NaN advantages -> 0."""
    per_func = torch.tensor(
        [[math.nan if v is None else v for v in col] for col in reward_columns], dtype=torch.float32
    ).T
    unscorable = torch.isnan(per_func).all(dim=1)
    rewards = per_func.nansum(dim=1)
    rewards[unscorable] = torch.nan
    grouped = rewards.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    std = nanstd(grouped, dim=1).repeat_interleave(group_size)
    return torch.nan_to_num((rewards - mean) / (std + 1e-4), nan=0.0)


def completion_text(title):
    return f'"{title}"\n'


def approx_list(values, abs_tol=1e-9):
    return [None if v is None else pytest.approx(v, abs=abs_tol) for v in values]


# -- hand-built groups ---------------------------------------------------------------------------------------------
# One call with four groups of G=4: target at rank 0, target at rank 2, target absent, and a group whose catalog ran
# out after two titles (ranks -1 are placeholder copies of the last beam).
GROUPS = [
    # (target, titles in rank order, ranks)
    ("red ball", ["red ball", "blue car", "green doll", "pink kite"], [0, 1, 2, 3]),
    ("green doll", ["blue car", "red car", "green doll", "pink kite"], [0, 1, 2, 3]),
    ("blue ball", ["red ball", "blue car", "green doll", "pink kite"], [0, 1, 2, 3]),
    ("pink kite", ["red car", "pink kite", "pink kite", "pink kite"], [0, 1, -1, -1]),
]


def flat_groups(groups=GROUPS):
    titles, targets, ranks, group_ids = [], [], [], []
    for g, (target, members, member_ranks) in enumerate(groups):
        titles += members
        targets += [target] * len(members)
        ranks += member_ranks
        group_ids += [g] * len(members)
    return titles, targets, ranks, group_ids


def reward_kwargs(titles, targets, ranks, group_ids, with_beam_title=True):
    kwargs = {
        "prompts": [f"p{g}" for g in group_ids],
        "completions": [completion_text(t) for t in titles],
        "target": targets,
        "beam_rank": ranks,
        "beam_score": [-float(r) if r >= 0 else -10.0 for r in ranks],
        "group_id": group_ids,
    }
    if with_beam_title:
        kwargs["beam_title"] = titles
    return kwargs


def test_rank_weights_match_ndcg_discount():
    assert rank_weights(G) == pytest.approx([1.0, 1 / math.log2(3), 0.5, 1 / math.log2(5)])


@pytest.mark.parametrize("with_beam_title", [True, False])
def test_rule_reward_exact(with_beam_title):
    titles, targets, ranks, group_ids = flat_groups()
    out = rule_reward(**reward_kwargs(titles, targets, ranks, group_ids, with_beam_title))
    expected = ref_rule(titles, targets, ranks)
    assert out == expected
    assert out[:4] == [1.0, 0.0, 0.0, 0.0]  # target at rank 0
    assert out[4:8] == [0.0, 0.0, 1.0, 0.0]  # target at rank 2
    assert out[8:12] == [0.0] * 4  # absent
    assert out[12:] == [0.0, 1.0, None, None]  # placeholders are unscored


def test_rule_reward_plain_and_conversational_completions():
    targets = ["red ball", "red ball", "red ball"]
    plain = ['"red ball"\n', '"blue car"\n', "red ball"]  # quotes and newline stripped; bare text also compared
    assert rule_reward(plain, targets) == [1.0, 0.0, 1.0]
    conversational = [[{"role": "assistant", "content": c}] for c in plain]
    assert rule_reward(conversational, targets) == [1.0, 0.0, 1.0]
    # the comparison is exact: case and inner whitespace matter
    assert rule_reward(['"Red Ball"\n', '"red  ball"\n'], targets[:2]) == [0.0, 0.0]


@pytest.mark.parametrize("with_beam_title", [True, False])
def test_ranking_reward_exact_mixed_groups(with_beam_title):
    titles, targets, ranks, group_ids = flat_groups()
    out = ranking_reward(**reward_kwargs(titles, targets, ranks, group_ids, with_beam_title))
    expected = ref_ranking(titles, targets, ranks, group_ids, G)
    assert out == approx_list(expected)
    z = ref_z(G)
    # target at rank 0: the three negatives get -w_i/Z for i = 1, 2, 3
    assert out[:4] == approx_list([0.0, -ref_weight(1) / z, -ref_weight(2) / z, -ref_weight(3) / z])
    # target at rank 2: the negatives above it are pushed down more than the one below
    assert out[4:8] == approx_list([-1 / z, -ref_weight(1) / z, 0.0, -ref_weight(3) / z])
    assert out[4] < out[5] < out[7] < 0.0
    # target absent: the group carries no signal
    assert out[8:12] == [0.0, 0.0, 0.0, 0.0]
    # placeholders (beam_rank -1) get None; Z still sums over all G ranks
    assert out[12:] == approx_list([-1 / z, 0.0, None, None])


def test_ranking_reward_penalties_sum():
    """The penalties of a group sum to -(1 - w_t / Z) when the target sits at rank t (all G weights but its own)."""
    for t_rank in range(G):
        members = [f"item{i}" for i in range(G)]
        members[t_rank] = "target"
        out = ranking_reward([completion_text(m) for m in members], ["target"] * G, beam_rank=list(range(G)),
                             group_id=[0] * G, beam_title=members)
        assert sum(out) == pytest.approx(-(1 - ref_weight(t_rank) / ref_z(G)))


def test_ranking_reward_rows_in_any_order():
    """Groups come from group_id and ranks from beam_rank, not from row positions."""
    titles, targets, ranks, group_ids = flat_groups()
    expected = ref_ranking(titles, targets, ranks, group_ids, G)
    order = list(range(len(titles)))
    random.Random(0).shuffle(order)
    pick = lambda xs: [xs[i] for i in order]  # noqa: E731
    out = ranking_reward(**reward_kwargs(pick(titles), pick(targets), pick(ranks), pick(group_ids)))
    assert out == approx_list(pick(expected))


def test_ranking_reward_without_rank_fields_uses_prompt_runs_and_positions():
    """Called like a plain TRL reward (no group_id / beam_rank): consecutive equal prompts form a group and the
    position inside the run is the rank."""
    titles, targets, ranks, group_ids = flat_groups(GROUPS[:3])
    out = ranking_reward([completion_text(t) for t in titles], targets, prompts=[f"p{g}" for g in group_ids])
    assert out == approx_list(ref_ranking(titles, targets, ranks, group_ids, G))


def test_ranking_reward_duplicates_from_sampling():
    """Temperature sampling can repeat items: every copy of the target gets 0, every negative its own rank's penalty."""
    members = ["red ball", "blue car", "red ball", "blue car"]
    out = ranking_reward(
        [completion_text(m) for m in members], ["red ball"] * 4, beam_rank=[0, 1, 2, 3], group_id=[7] * 4,
        beam_title=members,
    )
    z = ref_z(4)
    assert out == approx_list([0.0, -ref_weight(1) / z, 0.0, -ref_weight(3) / z])


# -- advantages ----------------------------------------------------------------------------------------------------
def group_with_target_at(t_rank: int, group_size: int = 8):
    members = [f"negative {i}" for i in range(group_size)]
    members[t_rank] = "target"
    return members, ["target"] * group_size, list(range(group_size)), [0] * group_size


def rere_columns(titles, targets, ranks, group_ids):
    kwargs = reward_kwargs(titles, targets, ranks, group_ids)
    return [rule_reward(**kwargs), ranking_reward(**kwargs)]


def test_nanstd_is_unbiased_like_torch_std():
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, -1.0, 2.0, 0.25]])
    assert torch.allclose(nanstd(x, dim=1), x.std(dim=1))


@pytest.mark.parametrize("t_rank", [0, 3])
def test_advantages_target_up_higher_ranked_negatives_down_more(t_rank):
    group_size = 8
    titles, targets, ranks, group_ids = group_with_target_at(t_rank, group_size)
    columns = rere_columns(titles, targets, ranks, group_ids)
    adv = trl_advantages(columns, group_size)
    # the same numbers straight from the formula, in float64
    r = torch.tensor([a + b for a, b in zip(*columns)], dtype=torch.float64)
    expected = (r - r.mean()) / (r.std() + 1e-4)
    assert torch.allclose(adv.double(), expected, atol=1e-5)
    assert torch.isfinite(adv).all()
    assert adv[t_rank] > 0
    negatives = [i for i in range(group_size) if i != t_rank]
    assert all(adv[i] < 0 for i in negatives)
    # strictly decreasing penalty with rank: a negative ranked higher gets the lower advantage
    neg_adv = adv[negatives]
    assert (neg_adv[1:] > neg_adv[:-1]).all()
    assert adv.sum().abs() < 1e-4  # centred per group
    # the rule reward alone cannot tell the negatives apart
    rule_only = trl_advantages(columns[:1], group_size)
    assert torch.allclose(rule_only[negatives], rule_only[negatives][0].expand(len(negatives)))


def test_advantages_target_at_rank0_vs_rank3():
    """The target earns more advantage when the model ranked it lower (more negatives above it to push down)."""
    adv0 = trl_advantages(rere_columns(*group_with_target_at(0)), 8)
    adv3 = trl_advantages(rere_columns(*group_with_target_at(3)), 8)
    assert adv0[0] > 0 and adv3[3] > 0
    # in the rank-3 group the negatives at ranks 0..2 sit below every negative ranked after the target
    assert adv3[:3].max() < adv3[4:].min()


def test_advantages_target_absent_all_zero_no_nan():
    titles = [f"negative {i}" for i in range(8)]
    columns = rere_columns(titles, ["target"] * 8, list(range(8)), [0] * 8)
    assert columns == [[0.0] * 8, [0.0] * 8]
    adv = trl_advantages(columns, 8)
    assert not torch.isnan(adv).any()
    assert torch.equal(adv, torch.zeros(8))


def test_advantages_mixed_batch_with_placeholders_are_finite():
    titles, targets, ranks, group_ids = flat_groups()
    adv = trl_advantages(rere_columns(titles, targets, ranks, group_ids), G)
    assert torch.isfinite(adv).all()
    assert torch.equal(adv[8:12], torch.zeros(4))  # target absent
    assert torch.equal(adv[14:], torch.zeros(2))  # placeholders carry no signal
    assert adv[13] > 0 > adv[12]  # two real members: target up, negative down


# -- semantic and collaborative rewards ----------------------------------------------------------------------------
def test_semantic_reward_cosine():
    titles = ["red ball", "blue car", "green doll", "red ball"]  # "red ball" carries item ids 0 and 3
    catalog = ItemCatalog.from_titles(titles)
    emb = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 5.0, 0.0]])
    reward = semantic_reward(emb, catalog)
    assert reward.__name__ == "semantic_reward"

    def cos(a, b):
        a, b = emb[a].double(), emb[b].double()
        return float(a @ b / (a.norm() * b.norm()))

    completions = ['"red ball"\n', '"blue car"\n', '"green doll"\n', '"not an item"\n']
    targets = ["blue car"] * 4
    out = reward(completions, targets)
    assert out[:3] == approx_list([cos(0, 1), 1.0, cos(2, 1)], abs_tol=1e-6)
    assert out[0] == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert out[2] == pytest.approx(0.0, abs=1e-6)
    assert out[3] is None  # not a catalog title
    # with the trainer's fields: beam_title is used and placeholders are unscored
    out = reward(["x"] * 3, ["green doll"] * 3, beam_title=["green doll", "red ball", "red ball"], beam_rank=[0, 1, -1])
    assert out == approx_list([1.0, cos(0, 2), None], abs_tol=1e-6)


def test_collaborative_reward_toy_scorer():
    catalog = ItemCatalog.from_titles(["red ball", "blue car", "green doll"], item_ids=[10, 20, 30])
    calls = []

    def scorer(history, item_id):
        calls.append((list(history), item_id))
        return item_id / 10 + len(history)

    reward = collaborative_reward(scorer, catalog)
    assert reward.__name__ == "collaborative_reward"
    out = reward(
        ['"red ball"\n', '"blue car"\n', '"unknown"\n', '"green doll"\n'],
        history_item_ids=[[20], [10, 30], [10], [20, 30, 10]],
        target=["blue car"] * 4,
    )
    assert out == [1 + 1, 2 + 2, None, 3 + 3]
    assert calls == [([20], 10), ([10, 30], 20), ([20, 30, 10], 30)]
    # another history column, trainer fields
    reward = collaborative_reward(lambda h, i: float(i in h), catalog, history_column="hist")
    out = reward(["?"] * 3, hist=[[30], [10], [30]], beam_title=["green doll", "green doll", "red ball"],
                 beam_rank=[0, 1, -1])
    assert out == [1.0, 0.0, None]


# -- name resolution through the trainer ---------------------------------------------------------------------------
def test_resolve_reward_funcs_names_and_callables():
    def mine(completions, **kwargs):
        return [0.0] * len(completions)

    assert resolve_reward_funcs(["rule", mine, "ranking"]) == [rule_reward, mine, ranking_reward]
    assert resolve_reward_funcs("rule") == [rule_reward]
    assert resolve_reward_funcs(["rule_reward", "ranking_reward"]) == [rule_reward, ranking_reward]
    assert resolve_reward_funcs(None) == []


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Qwen2 saved with its tokenizer (the trainer gets the path)."""
    from trl_rere.testing import tiny_causal_lm, train_tokenizer

    prompts = [f'History: "{t}"\n### Response:\n' for t in TITLES]
    tokenizer = train_tokenizer([p + completion_text(t) for p in prompts for t in TITLES], kind="bpe", vocab_size=512)
    path = tmp_path_factory.mktemp("tiny-rewards")
    tiny_causal_lm(tokenizer, hidden_size=32, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), tokenizer


def _dataset():
    from datasets import Dataset

    rows = [{"prompt": f'History: "{t}"\n### Response:\n', "target": TITLES[(k + 1) % len(TITLES)]}
            for k, t in enumerate(TITLES)]
    return Dataset.from_list(rows)


def _args(tmp_path, **kw):
    kw = {"per_device_train_batch_size": 8, "num_generations": 4, "max_steps": 1, "report_to": [], "use_cpu": True,
          "activation_checkpointing": False, "save_strategy": "no", "disable_tqdm": True, "beta": 0.0, **kw}
    return ReReConfig(output_dir=str(tmp_path), **kw)


def test_trainer_resolves_names_mixed_with_callables(tiny_model_dir, tmp_path):
    """`"rule"` / `"ranking"` strings and a callable go through ReReTrainer; one generation batch gets exactly the
    rewards and advantages of the formulas, and the callable sees the beam fields."""
    path, tokenizer = tiny_model_dir
    seen = []

    def recorder(completions, **kwargs):
        seen.append({"completions": completions, **kwargs})
        return [0.0] * len(completions)

    trainer = ReReTrainer(model=path, args=_args(tmp_path), train_dataset=_dataset(), catalog=TITLES,
                          processing_class=tokenizer, reward_funcs=["rule", recorder, "ranking"])
    assert trainer.reward_funcs == [rule_reward, recorder, ranking_reward]
    assert trainer.reward_func_names == ["rule_reward", "recorder", "ranking_reward"]

    rows = list(_dataset())[:2]
    inputs = [dict(row) for row in rows for _ in range(G)]
    trainer.model.train()
    trainer._rows = inputs  # what training_step records for the rollout before TRL generates
    out = trainer._generate_and_score_completions(inputs)
    (kw,) = seen
    for key in ("beam_rank", "beam_score", "beam_title", "beam_item_id", "group_id", "target", "prompts"):
        assert len(kw[key]) == 2 * G, key
    assert kw["group_id"] == [0] * G + [1] * G
    assert kw["target"] == [r["target"] for r in rows for _ in range(G)]
    assert kw["beam_rank"] == list(range(G)) * 2
    titles, targets, ranks, group_ids = kw["beam_title"], kw["target"], kw["beam_rank"], kw["group_id"]
    assert kw["completions"] == [completion_text(t) for t in titles]
    columns = [ref_rule(titles, targets, ranks), ref_ranking(titles, targets, ranks, group_ids, G)]
    expected = trl_advantages(columns, G)
    assert torch.allclose(out["advantages"].float().cpu(), expected, atol=1e-5)


def test_trainer_default_and_configured_rewards(tiny_model_dir, tmp_path):
    path, tokenizer = tiny_model_dir
    trainer = ReReTrainer(model=path, args=_args(tmp_path), train_dataset=_dataset(), catalog=TITLES,
                          processing_class=tokenizer)
    assert trainer.reward_funcs == [rule_reward, ranking_reward]  # ReRe = rule + ranking
    trainer = ReReTrainer(model=path, args=_args(tmp_path, rewards=["rule"]), train_dataset=_dataset(),
                          catalog=TITLES, processing_class=tokenizer)
    assert trainer.reward_funcs == [rule_reward]  # the rule-only ablation


def test_unknown_reward_name_is_refused():
    from trl_rere.rewards import resolve_reward_funcs

    with pytest.raises(ValueError, match="unknown reward 'rankng'"):
        resolve_reward_funcs(["rule", "rankng"])
    assert resolve_reward_funcs(["rule", "ranking"]) == [rule_reward, ranking_reward]
