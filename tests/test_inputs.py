"""Input errors in the loaders (issue 14, section 2): non-UTF-8 CSVs, exact category matching and the prompt's display
name, and the prompt-length limit that drops the oldest history items."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest
from tokenizers.processors import TemplateProcessing

from rere_test_utils import DATA_DIR, QWEN2_TOKENIZER_DIR

from trl_rere.catalog import ItemCatalog
from trl_rere.data import (
    DEFAULT_INSTRUCTIONS,
    DataError,
    build_prompt,
    find_category_files,
    instruction_index,
    load_amazon,
    load_amazon_split,
    prompt_token_count,
    prompt_token_counts,
    synthetic_catalog_dataset,
)
from trl_rere.testing import train_tokenizer


SHARED_DATA = DATA_DIR
QWEN2 = QWEN2_TOKENIZER_DIR
INDUSTRIAL = "Industrial_and_Scientific"
INDUSTRIAL_FILE = "Industrial_and_Scientific_5_1996-10-2018-11"
INDUSTRIAL_NOUN = "industrial and scientific items"

needs_real_data = pytest.mark.skipif(
    not (SHARED_DATA / "amazon" / "test" / f"{INDUSTRIAL_FILE}.csv").is_file(),
    reason=f"the real Industrial data is not at {SHARED_DATA}/amazon (see shared/data/README.md)",
)
needs_qwen2 = pytest.mark.skipif(not (QWEN2 / "tokenizer.json").is_file(), reason=f"no Qwen2 tokenizer at {QWEN2}")

COLUMNS = ["user_id", "history_item_id", "item_id", "history_item_title", "item_title"]
TITLES = ["Red Ball", "Blue Car, large", 'Green "Kite"', "Yellow Duck", "Purple Drum", "Orange Yo-Yo"]


@pytest.fixture
def catalog():
    return ItemCatalog.from_titles(TITLES)


def row(user: str, history: list[int], item: int) -> dict:
    return {
        "user_id": user, "history_item_id": str(history), "item_id": str(item),
        "history_item_title": str([TITLES[i] for i in history]), "item_title": TITLES[item],
    }


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_info(path: Path, titles: list[str] = TITLES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t}\t{i}\n" for i, t in enumerate(titles)), encoding="utf-8")
    return path


def write_set(root: Path, stem: str, splits=("test",)) -> None:
    write_info(root / "info" / f"{stem}.txt")
    for split in splits:
        write_csv(root / split / f"{stem}.csv", [row("u1", [0, 1], 2), row("u2", [3], 4)])


# -- non-UTF-8 CSV --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_csv_non_utf8_names_file_line_and_byte(tmp_path, catalog, on_error):
    path = write_csv(tmp_path / "Toys_and_Games_5_x.csv", [row(f"u{i}", [0, 1], 2) for i in range(400)])
    data = path.read_bytes().split(b"\n")
    # Line 301 (data row 300): a Latin-1 "é" in the user id, well past the text reader's first decoding chunk.
    data[300] = b"caf\xe9" + data[300]
    path.write_bytes(b"\n".join(data))
    with pytest.raises(DataError) as err:
        load_amazon_split(path, catalog, split_name="test", on_error=on_error)
    assert str(err.value).startswith(f"{path} (test): line 301: not valid UTF-8 at byte 3 of the line (bytes e9")


# -- category files -------------------------------------------------------------------------------------------------
@needs_real_data
def test_real_industrial_prefix_does_not_match_industrial_and_scientific():
    with pytest.raises(FileNotFoundError) as err:
        load_amazon(SHARED_DATA, "Industrial", splits=("test",))
    text = str(err.value)
    assert str(SHARED_DATA / "amazon" / "info" / "Industrial_5_*.txt") in text
    assert "categories with such files there: Industrial_and_Scientific, Toys_and_Games" in text


@needs_real_data
def test_real_industrial_and_scientific_matches_one_file_set():
    files = find_category_files(SHARED_DATA, INDUSTRIAL, splits=("valid", "test"))
    amazon = SHARED_DATA / "amazon"
    assert files == {
        "info": amazon / "info" / f"{INDUSTRIAL_FILE}.txt",
        "valid": amazon / "valid" / f"{INDUSTRIAL_FILE}.csv",
        "test": amazon / "test" / f"{INDUSTRIAL_FILE}.csv",
    }
    # The old prompts said "Industrials"; the known key maps to the authors' noun.
    _, splits = load_amazon(SHARED_DATA, INDUSTRIAL, splits="test")
    assert all(f"following {INDUSTRIAL_NOUN}s before: " in p for p in splits["test"]["prompt"][:50])


def test_category_matches_only_the_exact_key(tmp_path):
    write_set(tmp_path, "Toys_and_Games_5_2016-10-2018-11")
    write_set(tmp_path, "Toys_5_2016-10-2018-11")
    assert find_category_files(tmp_path, "Toys", ["test"])["test"].name == "Toys_5_2016-10-2018-11.csv"
    files = find_category_files(tmp_path, "Toys_and_Games", ["test"])
    assert files["info"].name == "Toys_and_Games_5_2016-10-2018-11.txt"
    with pytest.raises(FileNotFoundError, match=r"categories with such files there: Toys, Toys_and_Games"):
        find_category_files(tmp_path, "Toys_and", ["test"])
    with pytest.raises(FileNotFoundError, match=r"data directory not found: .*nope \(looking for category 'Toys'\)"):
        find_category_files(tmp_path / "nope", "Toys", ["test"])
    with pytest.raises(ValueError, match="'info' is the catalog's folder"):
        find_category_files(tmp_path, "Toys", ["info"])


def test_two_date_ranges_are_two_file_sets(tmp_path):
    write_set(tmp_path, "Toys_and_Games_5_2014-01-2018-11")
    write_set(tmp_path, "Toys_and_Games_5_2016-10-2018-11")
    with pytest.raises(ValueError) as err:
        load_amazon(tmp_path, "Toys_and_Games", splits=("test",))
    text = str(err.value)
    assert "'Toys_and_Games' has 2 file sets" in text
    assert f"Toys_and_Games_5_2014-01-2018-11 in {tmp_path} (info/Toys_and_Games_5_2014-01-2018-11.txt, " in text
    assert "Toys_and_Games_5_2016-10-2018-11 in" in text


def test_a_set_in_the_folder_and_in_amazon_is_two_sets(tmp_path):
    write_set(tmp_path, "Toys_and_Games_5_2016-10-2018-11")
    write_set(tmp_path / "amazon", "Toys_and_Games_5_2016-10-2018-11")
    with pytest.raises(ValueError, match=r"has 2 file sets") as err:
        find_category_files(tmp_path, "Toys_and_Games", ["test"])
    assert f"in {tmp_path / 'amazon'} (" in str(err.value)


def test_a_split_of_another_date_range_is_not_mixed_in(tmp_path):
    # The catalog of one preprocessing run and a CSV of another have different item ids.
    write_info(tmp_path / "info" / "Toys_and_Games_5_2016-10-2018-11.txt")
    write_csv(tmp_path / "test" / "Toys_and_Games_5_2014-01-2018-11.csv", [row("u", [0], 1)])
    with pytest.raises(ValueError, match="has 2 file sets"):
        find_category_files(tmp_path, "Toys_and_Games", ["test"])


def test_a_missing_split_names_its_folder_and_what_is_there(tmp_path):
    write_set(tmp_path / "amazon", "Toys_and_Games_5_2016-10-2018-11", splits=("test",))
    write_csv(tmp_path / "amazon" / "valid" / "Office_Products_5_x.csv", [row("u", [0], 1)])
    with pytest.raises(FileNotFoundError) as err:
        load_amazon(tmp_path, "Toys_and_Games", splits=("valid", "test"))
    text = str(err.value)
    assert text.startswith(f"no valid file for category 'Toys_and_Games' under {tmp_path}; looked for ")
    assert str(tmp_path / "amazon" / "valid" / "Toys_and_Games_5_*.csv") in text
    assert "categories with such files there: Office_Products" in text


def test_unknown_category_needs_category_name(tmp_path):
    write_set(tmp_path, "Sports_and_Outdoors_5_2016-10-2018-11")
    with pytest.raises(ValueError) as err:
        load_amazon(tmp_path, "Sports_and_Outdoors", splits=("test",))
    text = str(err.value)
    assert "name for category 'Sports_and_Outdoors' is not known" in text
    assert "category_name='sports and outdoors items'" in text
    _, splits = load_amazon(tmp_path, "Sports_and_Outdoors", ("test",), category_name="sports gear")
    assert "The user has palyed the following sports gears before: " in splits["test"][0]["prompt"]
    with pytest.raises(ValueError, match="category_name must be a non-empty string"):
        load_amazon(tmp_path, "Sports_and_Outdoors", ("test",), category_name=" ")


def test_category_name_overrides_a_known_key(tmp_path, catalog):
    write_set(tmp_path, "Toys_and_Games_5_2016-10-2018-11")
    _, splits = load_amazon(tmp_path, "Toys_and_Games", ("test",), category_name="toy")
    assert "following toys before: " in splits["test"][0]["prompt"]
    assert "toys and games" not in splits["test"][0]["prompt"]
    _, splits = load_amazon(tmp_path, "Toys_and_Games", ("test",), seed=3, max_history=1)
    assert "following toys and gamess before: " in splits["test"][0]["prompt"]
    # Given explicitly, the name is used as is (not turned into "games for kids" as a key would be).
    path = tmp_path / "test" / "Toys_and_Games_5_2016-10-2018-11.csv"
    split = load_amazon_split(path, catalog, category="Office_Products", category_name="games_for_kids")
    assert "following games_for_kidss before" in split[0]["prompt"]


# -- prompt length --------------------------------------------------------------------------------------------------
def bpe_with_bos():
    """A small BPE tokenizer that adds a BOS, to check that the count includes special tokens as the trainer's does."""
    tok = train_tokenizer(TITLES, "bpe")
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", tok.eos_token_id)]
    )
    return tok


def test_prompt_token_count_includes_special_tokens():
    tok = bpe_with_bos()
    prompt = build_prompt(TITLES[:3], "toys and games")
    plain = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert prompt_token_count(tok, prompt) == plain + 1
    assert prompt_token_counts(tok, [prompt, prompt[:40]]) == [plain + 1, len(tok(prompt[:40])["input_ids"])]
    assert prompt_token_counts(tok, []) == []
    with pytest.raises(TypeError, match="prompt_token_counts"):
        prompt_token_count(tok, [prompt])


def test_limit_drops_the_oldest_items_and_keeps_the_ending(tmp_path, catalog):
    tok = bpe_with_bos()
    rows = [row("u1", [0, 1, 3, 4, 5], 2), row("u2", [3], 4), row("u3", [5, 4, 3, 1], 0)]
    path = write_csv(tmp_path / "Toys_and_Games_5_x.csv", rows)
    full = load_amazon_split(path, catalog)
    lengths = prompt_token_counts(tok, full["prompt"])
    # Just under the longest prompt, counting the BOS: row 1 must lose items; the one-item row 2 must stay whole.
    limit = max(lengths) - 1
    assert lengths[1] <= limit
    cut = load_amazon_split(path, catalog, tokenizer=tok, max_prompt_length=limit)
    assert cut["target"] == full["target"]
    for k, (before, after) in enumerate(zip(full, cut)):
        assert prompt_token_count(tok, after["prompt"]) <= limit
        kept = len(after["history_titles"])
        assert after["history_titles"] == before["history_titles"][-kept:]
        assert after["history_item_ids"] == before["history_item_ids"][-kept:]
        instruction = DEFAULT_INSTRUCTIONS[instruction_index(42, k + 1)]
        assert after["prompt"] == build_prompt(after["history_titles"], "Toys_and_Games", instruction)
        if lengths[k] <= limit:
            assert after == before
        else:
            assert kept < len(before["history_titles"])
            # The most items that fit: one more would be over the limit.
            longer = build_prompt(before["history_titles"][-kept - 1 :], "Toys_and_Games", instruction)
            assert prompt_token_count(tok, longer) > limit


def test_a_prompt_that_cannot_fit_names_the_row(tmp_path, catalog):
    tok = bpe_with_bos()
    path = write_csv(tmp_path / "Toys_and_Games_5_x.csv", [row("u1", [0], 3), row("u2", [3, 4, 1], 2)])
    one = ("Recommend one.",)  # the same instruction for both rows, so only the titles differ
    short = prompt_token_count(tok, build_prompt([TITLES[0]], "Toys_and_Games", one[0]))
    longer = prompt_token_count(tok, build_prompt([TITLES[1]], "Toys_and_Games", one[0]))
    whole = prompt_token_count(tok, build_prompt([TITLES[i] for i in (3, 4, 1)], "Toys_and_Games", one[0]))
    assert short < longer
    with pytest.raises(DataError) as err:
        load_amazon_split(path, catalog, split_name="train", instructions=one, tokenizer=tok, max_prompt_length=short)
    assert str(err.value) == (
        f"{path} (train): data row 2 (line 3): the prompt has {longer} tokens even with only the most recent history "
        f"item ({whole} with 3 item(s)), more than max_prompt_length={short}; raise max_prompt_length or use a "
        f"shorter template"
    )
    # Several rows that cannot fit: the first is named.
    with pytest.raises(DataError, match=r"data row 1 \(line 2\)"):
        load_amazon_split(path, catalog, instructions=one, tokenizer=tok, max_prompt_length=short - 1)
    with pytest.warns(UserWarning, match=r"skipped 1 malformed row\(s\) of 2, e.g. row 2 \(line 3\); first error: "):
        kept = load_amazon_split(
            path, catalog, instructions=one, tokenizer=tok, max_prompt_length=short, on_error="skip"
        )
    assert kept["user_id"] == ["u1"]
    assert prompt_token_count(tok, kept[0]["prompt"]) == short  # a prompt exactly at the limit is kept whole


def test_limit_arguments(tmp_path, catalog):
    path = write_csv(tmp_path / "Toys_and_Games_5_x.csv", [row("u1", [0], 1)])
    tok = bpe_with_bos()
    with pytest.raises(ValueError, match="max_prompt_length=100 needs tokenizer="):
        load_amazon_split(path, catalog, max_prompt_length=100)
    with pytest.raises(ValueError, match="pass both or neither"):
        load_amazon_split(path, catalog, tokenizer=tok)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_prompt_length must be a positive integer"):
            load_amazon_split(path, catalog, tokenizer=tok, max_prompt_length=bad)
    with pytest.raises(ValueError, match="needs tokenizer="):
        synthetic_catalog_dataset(num_items=8, num_users=4, max_prompt_length=100)


class CountingTokenizer:
    """Wraps a tokenizer and counts the calls and the texts tokenized, to check the limit's cost."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls, self.texts = tokenizer, 0, 0

    def __call__(self, text, **kwargs):
        self.calls += 1
        self.texts += 1 if isinstance(text, str) else len(text)
        return self.tokenizer(text=text, **kwargs)


def test_synthetic_limit_keeps_the_rule_and_only_retokenizes_long_rows():
    tok = CountingTokenizer(bpe_with_bos())
    _, full = synthetic_catalog_dataset(num_items=40, num_users=200, history_len=(1, 10), seed=1)
    lengths = prompt_token_counts(tok.tokenizer, full["prompt"])
    limit = int(statistics.median(lengths))
    tok.calls = tok.texts = 0
    _, cut = synthetic_catalog_dataset(
        num_items=40, num_users=200, history_len=(1, 10), seed=1, tokenizer=tok, max_prompt_length=limit
    )
    over = sum(n > limit for n in lengths)
    assert over > 20
    # One batch for all rows, then a binary search over at most 9 counts (ceil(log2 10) = 4 rounds), batched.
    assert tok.calls <= 1 + 4 and tok.texts <= len(lengths) + 4 * over
    assert max(prompt_token_counts(tok.tokenizer, cut["prompt"])) <= limit
    for before, after in zip(full, cut):
        assert after["history_titles"][-1] == before["history_titles"][-1] and after["target"] == before["target"]
        assert after["history_titles"] == before["history_titles"][-len(after["history_titles"]) :]


@pytest.fixture(scope="module")
def qwen2():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN2)


@pytest.mark.slow
@needs_real_data
@needs_qwen2
def test_real_test_split_within_the_limit_with_qwen2(qwen2):
    catalog, splits = load_amazon(SHARED_DATA, INDUSTRIAL, splits=("test",))
    full = splits["test"].to_dict()
    lengths = prompt_token_counts(qwen2, full["prompt"])
    limit = int(statistics.median(lengths))
    _, limited = load_amazon(SHARED_DATA, INDUSTRIAL, ("test",), tokenizer=qwen2, max_prompt_length=limit)
    cut = limited["test"].to_dict()
    assert cut["target"] == full["target"] and cut["user_id"] == full["user_id"]
    assert max(prompt_token_counts(qwen2, cut["prompt"])) <= limit
    shortened = []
    for k, n in enumerate(lengths):
        titles, before = cut["history_titles"][k], full["history_titles"][k]
        kept = len(titles)
        assert kept >= 1 and titles == before[-kept:]
        assert cut["history_item_ids"][k] == full["history_item_ids"][k][-kept:]
        instruction = DEFAULT_INSTRUCTIONS[instruction_index(42, k + 1)]
        # The same instruction and the fixed ending, with the most recent `kept` items.
        assert cut["prompt"][k] == build_prompt(titles, INDUSTRIAL, instruction)
        assert cut["prompt"][k].endswith(f'"{titles[-1]}"\n\n### Response:\n')
        if n <= limit:
            assert cut["prompt"][k] == full["prompt"][k]
        else:
            assert kept < len(before)
            shortened.append(build_prompt(before[-kept - 1 :], INDUSTRIAL, instruction))
    assert len(shortened) >= len(lengths) // 3
    # Each shortened prompt keeps as many items as fit: one more would be over the limit.
    assert min(prompt_token_counts(qwen2, shortened)) > limit
