"""MiniOneRec's alignment tasks (`trl_rere.data.alignment`): each task's rows on a tiny MiniOneRec folder and on the
shared data, the SFT completions, the seeded mixers, RL prompts through ReReTrainer for a step, SFT on a mix with
TRL's SFTTrainer for a step, and bad item-text files."""

import json
import os

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from rere_test_utils import DATA_DIR

from trl_rere.data import (
    ALIGNMENT_TASKS,
    RL_ALIGNMENT_TASKS,
    SPLIT_FEATURES,
    DataError,
    alignment_prompts,
    alignment_sft_dataset,
    load_item_texts,
    load_sid_amazon,
    mix_rl_tasks,
    mix_sft_tasks,
    read_item_texts,
    sid_prefix_pairs,
)
from trl_rere.data.alignment import (
    DESCRIPTION2SID_QUESTION,
    SID2TITLE_QUESTION,
    TITLE2SID_QUESTION,
)
from trl_rere.testing import write_minionerec_folder

CATEGORY = "Industrial_and_Scientific"
SUFFIX = "### Response:\n"
SHARED = DATA_DIR / "minionerec"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    data_dir = write_minionerec_folder(tmp_path_factory.mktemp("sid-data"))
    catalog, splits = load_sid_amazon(data_dir, CATEGORY, ("valid", "test"))
    return data_dir, catalog, splits, load_item_texts(data_dir, CATEGORY, catalog)


@pytest.fixture(scope="module")
def shared():
    if not (SHARED / "index" / f"{CATEGORY}.item.json").is_file():
        pytest.skip(f"the MiniOneRec data is not available at {SHARED}")
    catalog, splits = load_sid_amazon(SHARED, CATEGORY, ("valid",))
    return catalog, splits["valid"], load_item_texts(SHARED, CATEGORY, catalog)


def question(prompt):
    """The question between MiniOneRec's frame: '### User Input: \\n{question}\\n\\n### Response:\\n'."""
    head, suffix = "### User Input: \n", "\n\n" + SUFFIX
    assert prompt.startswith(head) and prompt.endswith(suffix), prompt
    return prompt[len(head):-len(suffix)]


# -- the rows of each task ----------------------------------------------------------------------------------------
def test_item_tasks_ask_about_every_item(tiny):
    _, catalog, _, texts = tiny
    items = sorted(catalog.item_id_to_title)
    for name in ("title2sid", "description2sid"):
        rows = alignment_prompts(name, catalog, texts)
        assert rows.features == SPLIT_FEATURES
        assert rows["target_item_id"] == items  # one row per item, in id order (the tiny items' texts are distinct)
        for row in rows:
            item = row["target_item_id"]
            assert row["target"] == catalog.title_of(item)
            expected = (TITLE2SID_QUESTION.format(title=texts.title(item)) if name == "title2sid"
                        else DESCRIPTION2SID_QUESTION.format(description=f"Description of item {item}."))
            assert question(row["prompt"]) == expected
            assert (row["user_id"], row["history_titles"], row["history_item_ids"]) == ("", [], [])
    rows = alignment_sft_dataset("sid2title", catalog, texts)
    assert len(rows) == len(items)
    for k, item in enumerate(items):
        assert question(rows[k]["prompt"]) == SID2TITLE_QUESTION.format(sid=catalog.title_of(item))
        assert rows[k]["completion"] == f"{texts.title(item)}\n"


def test_history_tasks_follow_the_next_item_rows(tiny):
    _, catalog, splits, texts = tiny
    valid = splits["valid"]
    rl = alignment_prompts("title_history2sid", catalog, texts, valid)
    fusion = alignment_sft_dataset("sid_history2title", catalog, texts, valid)
    d3 = alignment_sft_dataset("title_history2title", catalog, texts, valid)
    assert len(rl) == len(fusion) == len(d3) == len(valid)
    for k, row in enumerate(valid):
        titles = [texts.title(i) for i in row["history_item_ids"]]
        # the RL row keeps the next-item row's user, history (as SIDs) and target; only the prompt differs
        assert {c: rl[k][c] for c in SPLIT_FEATURES if c != "prompt"} == {c: row[c] for c in SPLIT_FEATURES
                                                                          if c != "prompt"}
        assert question(rl[k]["prompt"]) == (
            "Given the title sequence of user historical interactive items: "
            + ", ".join(f'"{t}"' for t in titles) + ", can you recommend a suitable next item for the user?")
        assert question(fusion[k]["prompt"]) == (
            f"The user has sequentially interacted with items {', '.join(row['history_titles'])}. Can you recommend "
            f"the next item for him? Tell me the title of the item")
        assert fusion[k]["completion"] == f"{texts.title(row['target_item_id'])}\n"
        # D3's title prompt with MiniOneRec's category noun; the title completion keeps its quotes
        assert "The user has palyed the following industrial and scientific itemss before: " in d3[k]["prompt"]
        assert d3[k]["prompt"].endswith(",\t".join(f'"{t}"' for t in titles) + "\n\n" + SUFFIX)
        assert d3[k]["completion"] == f'"{texts.title(row["target_item_id"])}"\n'


def test_sft_completions_are_the_item_format_for_items(tiny):
    _, catalog, splits, texts = tiny
    for name in RL_ALIGNMENT_TASKS:
        rl = alignment_prompts(name, catalog, texts, splits["valid"])
        sft = alignment_sft_dataset(name, catalog, texts, splits["valid"])
        assert sft["prompt"] == rl["prompt"]
        assert sft["completion"] == [f"{sid}\n" for sid in rl["target"]]


def test_every_task_ends_with_the_prompt_suffix(tiny):
    _, catalog, splits, texts = tiny
    for name in ALIGNMENT_TASKS:
        rows = alignment_sft_dataset(name, catalog, texts, splits["valid"])
        assert len(rows) > 0 and all(p.endswith(SUFFIX) for p in rows["prompt"]), name


def test_tasks_on_the_shared_minionerec_data(shared):
    catalog, valid, texts = shared
    assert len(texts) == catalog.num_items
    for name in ALIGNMENT_TASKS:
        rows = alignment_sft_dataset(name, catalog, texts, valid)
        assert all(p.endswith(SUFFIX) for p in rows["prompt"]), name
        if ALIGNMENT_TASKS[name].from_history:  # one row per next-item row (two users may share one)
            assert len(rows) == len(valid), name
        else:  # one row per item (with a description), but for items sharing their text and their SID
            assert len(set(zip(rows["prompt"], rows["completion"]))) == len(rows), name  # each question once
            items = len(texts.descriptions) if name == "description2sid" else catalog.num_items
            assert 0.99 * items <= len(rows) <= items, name
    for name in RL_ALIGNMENT_TASKS:
        rows = alignment_prompts(name, catalog, texts, valid)
        assert all(t in catalog for t in rows["target"]), name
        assert all(catalog.title_of(i) == t for i, t in zip(rows["target_item_id"], rows["target"])), name
    # a description is a text, not a list literal: the first entry of the published list
    rows = alignment_prompts("description2sid", catalog, texts)
    assert not any(question(p).startswith("An item can be described as follows: \"['") for p in rows["prompt"])


# -- mixing -------------------------------------------------------------------------------------------------------
def test_mixers_are_seeded_and_keep_every_row(tiny):
    _, catalog, splits, texts = tiny
    pairs = sid_prefix_pairs(splits["valid"])
    tasks = ["sid2title", "title2sid", "title_history2sid"]
    first = mix_sft_tasks(pairs, tasks, catalog, texts, seed=3)
    assert first.to_dict() == mix_sft_tasks(pairs, tasks, catalog, texts, seed=3).to_dict()
    other = mix_sft_tasks(pairs, tasks, catalog, texts, seed=4)
    assert other["prompt"] != first["prompt"]  # another order ...
    parts = [alignment_sft_dataset(t, catalog, texts, pairs) for t in tasks]
    expected = list(zip(pairs["prompt"], [f"{t}\n" for t in pairs["target"]]))
    for part in parts:
        expected += list(zip(part["prompt"], part["completion"]))
    assert sorted(zip(first["prompt"], first["completion"])) == sorted(expected)  # ... of the same rows
    assert sorted(zip(other["prompt"], other["completion"])) == sorted(expected)

    rl = mix_rl_tasks(pairs, RL_ALIGNMENT_TASKS, catalog, texts, seed=3)
    assert rl.to_dict() == mix_rl_tasks(pairs, RL_ALIGNMENT_TASKS, catalog, texts, seed=3).to_dict()
    assert rl.features == SPLIT_FEATURES
    assert len(rl) == len(pairs) + sum(len(alignment_prompts(t, catalog, texts, pairs)) for t in RL_ALIGNMENT_TASKS)
    assert all(t in catalog for t in rl["target"])
    assert mix_rl_tasks(pairs, None, catalog, texts, seed=3)["prompt"] != pairs["prompt"]  # shuffled alone too


def test_num_rows_is_a_seeded_sample(tiny):
    _, catalog, splits, texts = tiny
    valid = splits["valid"]
    full = alignment_prompts("title_history2sid", catalog, texts, valid)
    sample = alignment_prompts("title_history2sid", catalog, texts, valid, num_rows=5, seed=1)
    again = alignment_prompts("title_history2sid", catalog, texts, valid, num_rows=5, seed=1)
    assert len(sample) == 5 and sample.to_dict() == again.to_dict()
    assert set(sample["prompt"]) < set(full["prompt"])
    mixed = mix_rl_tasks(valid, ["title_history2sid"], catalog, texts, num_rows={"title_history2sid": 5})
    assert len(mixed) == len(valid) + 5
    # MiniOneRec's 10,000 rows are more than the tiny split has: all of them
    assert len(mix_rl_tasks(valid, ["title_history2sid"], catalog, texts)) == 2 * len(valid)


def test_bad_task_arguments_are_clear_errors(tiny):
    _, catalog, splits, texts = tiny
    valid = splits["valid"]
    with pytest.raises(ValueError, match="unknown alignment task 'sid2sid'; known: title2sid"):
        mix_sft_tasks(valid, ["sid2sid"], catalog, texts)
    with pytest.raises(ValueError, match="'sid2title' is answered with a title.*title2sid, description2sid"):
        mix_rl_tasks(valid, ["sid2title"], catalog, texts)
    with pytest.raises(ValueError, match="title2sid given twice"):
        mix_rl_tasks(valid, ["title2sid", "title2sid"], catalog, texts)
    with pytest.raises(ValueError, match="num_rows names task.*sid2title"):
        mix_sft_tasks(valid, ["title2sid"], catalog, texts, num_rows={"sid2title": 3})
    with pytest.raises(ValueError, match="num_rows for task 'title2sid' must be a positive integer"):
        alignment_prompts("title2sid", catalog, texts, num_rows=0)
    with pytest.raises(ValueError, match="'title_history2sid' is built from the next-item rows: pass next_item"):
        alignment_prompts("title_history2sid", catalog, texts)


# -- prompt length ------------------------------------------------------------------------------------------------
def test_max_prompt_length_shortens_the_prompts(tiny):
    from trl_rere.data import prompt_token_counts
    from trl_rere.testing import train_tokenizer

    _, catalog, splits, texts = tiny
    valid = splits["valid"]
    tokenizer = train_tokenizer(list(texts.titles.values()) + list(texts.descriptions.values()), vocab_size=300)
    last_only = valid.map(lambda r: {"history_titles": r["history_titles"][-1:],
                                     "history_item_ids": r["history_item_ids"][-1:]})
    limits = {}
    for name in ("title_history2sid", "title_history2title", "description2sid"):
        full = alignment_sft_dataset(name, catalog, texts, valid)
        counts = prompt_token_counts(tokenizer, full["prompt"])
        shortest = alignment_sft_dataset(name, catalog, texts, last_only)["prompt"] if name != "description2sid" else []
        limit = max([sorted(counts)[len(counts) // 2]] + prompt_token_counts(tokenizer, shortest))
        if name == "description2sid":  # the tiny descriptions are all alike: cut the longest ones by a token
            limit = max(counts) - 1
        limits[name] = limit
        assert sum(n > limit for n in counts) >= 3, name  # the limit shortens several prompts
        fitted = alignment_sft_dataset(name, catalog, texts, valid, tokenizer=tokenizer, max_prompt_length=limit)
        assert len(fitted) == len(full) and fitted["completion"] == full["completion"], name
        new_counts = prompt_token_counts(tokenizer, fitted["prompt"])
        assert max(new_counts) <= limit, name
        for before, after, n, old in zip(full["prompt"], fitted["prompt"], new_counts, counts):
            if old <= limit:
                assert after == before, name  # a prompt that fits is left as it is
            else:
                assert after != before and after.endswith(SUFFIX), name
    rl = alignment_prompts("title_history2sid", catalog, texts, valid, tokenizer=tokenizer,
                           max_prompt_length=limits["title_history2sid"])
    assert any(len(r["history_item_ids"]) < len(v["history_item_ids"]) for r, v in zip(rl, valid))
    for row in rl:  # the history columns keep the items the prompt still shows: the most recent ones
        assert question(row["prompt"]).count('"Item ') == len(row["history_item_ids"]) >= 1
    description = alignment_prompts("description2sid", catalog, texts, tokenizer=tokenizer,
                                    max_prompt_length=limits["description2sid"])
    assert any(question(p).endswith('...". Which item is it describing?') for p in description["prompt"])
    with pytest.raises(DataError, match=r"task 'title2sid', item id \d+: the prompt has \d+ tokens, more than "
                                        r"max_prompt_length=5"):
        alignment_prompts("title2sid", catalog, texts, tokenizer=tokenizer, max_prompt_length=5)
    with pytest.raises(DataError, match="task 'title_history2sid', next-item row of user_id .* even with only the "
                                        "most recent history item"):
        alignment_prompts("title_history2sid", catalog, texts, valid, tokenizer=tokenizer, max_prompt_length=5)
    with pytest.raises(ValueError, match="max_prompt_length=10 needs tokenizer="):
        mix_rl_tasks(valid, ["title2sid"], catalog, texts, max_prompt_length=10)


# -- bad item texts -----------------------------------------------------------------------------------------------
def write_texts(tmp_path, content):
    path = tmp_path / "index" / f"{CATEGORY}.item.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_missing_item_texts_name_the_file(tiny, tmp_path):
    data_dir, catalog, _, _ = tiny
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / f"{CATEGORY}.index.json").write_text(
        (data_dir / "index" / f"{CATEGORY}.index.json").read_text())
    with pytest.raises(FileNotFoundError, match=rf"item texts not found: .*{CATEGORY}\.item\.json.*item\.json"):
        load_item_texts(tmp_path, CATEGORY, catalog)


def test_an_item_without_a_title_is_an_error(tmp_path):
    path = write_texts(tmp_path, {"0": {"title": "Red Ball"}, "1": {"title": "  ", "description": "x"}})
    with pytest.raises(DataError, match=rf"{path}: item 1 has no title"):
        read_item_texts(path)
    path = write_texts(tmp_path, {"0": {"title": "Red Ball"}, "1": {"description": "x"}})
    with pytest.raises(DataError, match="item 1 has no title"):
        read_item_texts(path)


def test_item_texts_must_match_the_catalog(tmp_path):
    path = write_texts(tmp_path, {"0": {"title": "Red Ball"}, "1": {"title": "Blue Car"}})
    with pytest.raises(DataError, match="1 item.s. of the catalog have no entry, e.g. item id 2"):
        read_item_texts(path, [0, 1, 2])
    with pytest.raises(DataError, match="1 item.s. are not in the catalog, e.g. item id 1"):
        read_item_texts(path, [0])
    with pytest.raises(DataError, match=r"key 'x' is not an item id"):
        read_item_texts(write_texts(tmp_path, {"x": {"title": "Red Ball"}}))
    with pytest.raises(DataError, match="line 1, column .*not valid JSON"):
        read_item_texts(write_texts(tmp_path, "{not json"))


def test_descriptions_are_read_as_text(tmp_path):
    path = write_texts(tmp_path, {
        "0": {"title": "A", "description": "['', 'First words.', 'Second.']"},
        "1": {"title": "B", "description": "[]"},
        "2": {"title": "C", "description": ""},
        "3": {"title": "D", "description": "Plain text [with brackets]"},
        "4": {"title": "E", "description": "[not a literal"},
        "5": {"title": "F"},
        "6": {"title": "G", "description": "['A 3' rule', 'Second.']"},  # unescaped: not a literal, still a list
    })
    texts = read_item_texts(path)
    assert texts.descriptions == {0: "First words.", 3: "Plain text [with brackets]", 4: "[not a literal",
                                  6: "A 3' rule"}
    assert texts.category == CATEGORY


# -- training on the tasks ----------------------------------------------------------------------------------------
def sid_model(tmp_path, catalog, texts):
    from trl_rere import add_sid_tokens
    from trl_rere.testing import tiny_causal_lm, train_tokenizer

    tokenizer = train_tokenizer(list(texts.titles.values()) + ["### User Input: Which item has the title"],
                                vocab_size=400)
    add_sid_tokens(tokenizer, catalog)
    path = tmp_path / "model"
    tiny_causal_lm(tokenizer, hidden_size=32).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), tokenizer


def test_rl_on_mixed_tasks_trains_a_step(tiny, tmp_path):
    """Every RL task's prompt passes ReReTrainer's prompt checks (suffix, trie tokenization, length) and a mixed
    batch trains."""
    from trl_rere import ReReConfig, ReReTrainer

    _, catalog, splits, texts = tiny
    train = mix_rl_tasks(splits["valid"], RL_ALIGNMENT_TASKS, catalog, texts, seed=0)
    path, tokenizer = sid_model(tmp_path, catalog, texts)
    args = ReReConfig(output_dir=str(tmp_path / "out"), item_format="sid", num_generations=4,
                      per_device_train_batch_size=8, max_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                      disable_tqdm=True, seed=0)
    trainer = ReReTrainer(model=path, args=args, train_dataset=train, processing_class=tokenizer, catalog=catalog)
    ids = trainer.encode_prompts(list(train["prompt"]), list(train))
    assert len(ids) == len(train)
    assert trainer.train().global_step == 1


def test_sft_on_mixed_tasks_trains_a_step(tiny, tmp_path):
    """TRL's SFTTrainer takes the mix as prompt-completion data and trains on the completions only."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    _, catalog, splits, texts = tiny
    train = mix_sft_tasks(splits["valid"], list(ALIGNMENT_TASKS), catalog, texts, seed=0)
    path, tokenizer = sid_model(tmp_path, catalog, texts)
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=8, report_to=[],
                     use_cpu=True, save_strategy="no", disable_tqdm=True, max_length=None, dataset_num_proc=None,
                     bf16=False)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args, train_dataset=train,
                         processing_class=tokenizer)
    assert len(trainer.train_dataset) == len(train)
    row = trainer.train_dataset[0]
    start = len(tokenizer(train[0]["prompt"])["input_ids"])
    assert row["labels"][:start] == [-100] * start and -100 not in row["labels"][start:]
    assert trainer.train().global_step == 1


# -- the example scripts' --align_tasks ---------------------------------------------------------------------------
def run_example(script, *args, timeout=300):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TRL_EXPERIMENTAL_SILENCE="1",
               CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, str(repo / "examples" / script), *map(str, args)], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_sft_example_mixes_the_tasks(tiny, tmp_path):
    data_dir, catalog, splits, texts = tiny
    from trl_rere.testing import tiny_causal_lm, train_tokenizer

    tokenizer = train_tokenizer(list(texts.titles.values()) + ["### User Input: Which item has the title"],
                                vocab_size=300)
    tiny_causal_lm(tokenizer, hidden_size=16).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    common = ["--model_name_or_path", tmp_path / "model", "--item_format", "sid", "--data_dir", data_dir,
              "--category", CATEGORY, "--train_split", "valid", "--eval_split", "none", "--max_steps", "1",
              "--per_device_train_batch_size", "2", "--save_strategy", "no", "--output_dir", tmp_path / "sft"]
    proc = run_example("sft.py", *common, "--align_tasks", "sid2title", "title2sid")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    added = 2 * catalog.num_items  # the tiny items' titles and SIDs are distinct: one row per item and task
    assert f"alignment tasks sid2title, title2sid: {added:,} rows next to the {len(splits['valid']):,}" in proc.stdout
    proc = run_example("sft.py", *common, "--align_tasks", "sid2sid")
    assert proc.returncode == 2 and "error: --align_tasks sid2sid: unknown alignment task 'sid2sid'" in proc.stderr


def test_toys_example_refuses_tasks_it_cannot_build(tmp_path):
    """A title task in RL, or alignment tasks without semantic IDs or item texts, stop the run before any model."""
    proc = run_example("toys.py", "--smoke", "--item_format", "sid", "--align_tasks", "title2sid",
                       "--output_dir", tmp_path / "a", timeout=120)
    assert proc.returncode == 2 and "--align_tasks title2sid: the tasks read the item texts" in proc.stderr
    proc = run_example("toys.py", "--smoke", "--align_tasks", "title2sid", "--output_dir", tmp_path / "b",
                       timeout=120)
    assert proc.returncode == 2 and "they need --item_format sid" in proc.stderr
