import ast
import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_rere.catalog import ItemCatalog
from trl_rere.data import (
    CATEGORY_NAMES,
    DEFAULT_INSTRUCTIONS,
    DEFAULT_PROMPT_TEMPLATE,
    DataError,
    build_prompt,
    instruction_index,
    load_amazon,
    load_amazon_split,
    synthetic_catalog_dataset,
    title_prefix_pairs,
)


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
INDUSTRIAL = "Industrial_and_Scientific"
INDUSTRIAL_FILE = "Industrial_and_Scientific_5_1996-10-2018-11"

HEADER = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request. \n\n### Instruction:\n"
)
COLUMNS = [
    "user_id", "item_asins", "item_asin", "history_item_id", "item_id", "history_item_title", "item_title",
    "history_rating", "rating", "history_timestamp", "timestamp",
]


def expected_prompt(instruction, noun, titles):
    """The authors' layout, written out independently of the template constant."""
    history = ",\t".join('"' + t + '"' for t in titles)
    return (
        HEADER + instruction + "\n \n### User Input: \nThe user has palyed the following " + noun + "s before: "
        + history + "\n\n### Response:\n"
    )


needs_real_data = pytest.mark.skipif(
    not (SHARED_DATA / "amazon" / "test" / f"{INDUSTRIAL_FILE}.csv").is_file(),
    reason=f"the real Industrial data is not at {SHARED_DATA}/amazon (see shared/data/README.md)",
)


@pytest.fixture(scope="module")
def industrial():
    return load_amazon(SHARED_DATA, INDUSTRIAL, splits=("valid", "test"))


# -- prompt ---------------------------------------------------------------------------------------------------------
def test_template_reproduces_the_original_layout():
    instruction = DEFAULT_INSTRUCTIONS[3].replace("{category}", "toys and games")
    prompt = build_prompt(['A "quoted" toy', "Kite, red"], "Toys_and_Games", instruction=instruction)
    assert prompt == expected_prompt(instruction, "toys and games", ['A "quoted" toy', "Kite, red"])
    assert "palyed" in DEFAULT_PROMPT_TEMPLATE
    assert prompt.endswith('"Kite, red"\n\n### Response:\n')


def test_instructions_are_the_authors_eleven():
    assert len(DEFAULT_INSTRUCTIONS) == 11
    assert DEFAULT_INSTRUCTIONS[0] == (
        "Given a list of {category} the user recetenly enjoy, please write a new {category} that the user may bought"
    )
    assert all("{category}" in s for s in DEFAULT_INSTRUCTIONS)
    assert len(set(DEFAULT_INSTRUCTIONS)) == 11


def test_category_names():
    assert CATEGORY_NAMES["Toys_and_Games"] == "toys and games"
    assert CATEGORY_NAMES["Industrial_and_Scientific"] == "industrial and scientific items"
    assert CATEGORY_NAMES["Office_Products"] == "office products"
    assert CATEGORY_NAMES["Yelp"] == "restaurants"
    assert "the following restaurantss before" in build_prompt(["Cafe"], "Yelp")
    assert "the following board gamess before" in build_prompt(["Go"], "board games")


def test_build_prompt_keeps_the_last_ten_oldest_first():
    titles = [f"Title number {chr(65 + i)}" for i in range(12)]
    prompt = build_prompt(titles, "toys and games")
    assert titles[0] not in prompt and titles[1] not in prompt
    positions = [prompt.index(f'"{t}"') for t in titles[2:]]
    assert positions == sorted(positions)
    assert prompt.count('",\t"') == 9
    assert build_prompt(titles, "toys and games", max_history=3).count('",\t"') == 2


def test_build_prompt_rejects_a_string_history():
    with pytest.raises(TypeError, match="sequence of titles"):
        build_prompt("Red Ball", "toys and games")


def test_instruction_index_is_stable_and_spread():
    assert instruction_index(42, 7) == instruction_index(42, 7)
    picks = {instruction_index(42, r) for r in range(500)}
    assert picks == set(range(len(DEFAULT_INSTRUCTIONS)))
    assert [instruction_index(1, r) for r in range(50)] != [instruction_index(2, r) for r in range(50)]


def test_title_prefix_pairs_slide_over_each_sequence_with_the_title_prompt():
    from datasets import Dataset

    _, users = synthetic_catalog_dataset(num_items=16, num_users=2, history_len=(3, 4), seed=2)
    rows = Dataset.from_list([users[0], users[0], users[1]])  # a repeated row, as the files' overlapping rows repeat
    sizes = [len(h) for h in rows["history_titles"]]
    every = title_prefix_pairs(rows, "Toys_and_Games", max_history=2, unique=False)
    assert len(every) == sum(sizes)
    number = 0
    for row in rows:
        sequence = list(row["history_titles"]) + [row["target"]]
        for k in range(1, len(sequence)):
            pair = every[number]
            number += 1  # pairs are numbered from 1, and pair n gets the instruction hashed from (seed, n)
            assert pair["history_titles"] == sequence[max(0, k - 2):k] and pair["target"] == sequence[k]
            instruction = DEFAULT_INSTRUCTIONS[instruction_index(42, number)]
            assert pair["prompt"] == build_prompt(pair["history_titles"], "Toys_and_Games", instruction, max_history=2)
    once = title_prefix_pairs(rows, "Toys_and_Games", max_history=2)
    assert len(once) == sizes[0] + sizes[2]  # the repeated row's pairs are kept once, with the same prompts
    assert list(once["prompt"]) == list(every["prompt"][: sizes[0]]) + list(every["prompt"][2 * sizes[0]:])


# -- real data ------------------------------------------------------------------------------------------------------
@needs_real_data
def test_real_industrial_splits_load(industrial):
    catalog, splits = industrial
    assert len(catalog) == 3646 and catalog.num_items == 3686
    assert splits["valid"].num_rows == 4532
    assert splits["test"].num_rows == 4533
    assert splits["test"].column_names == [
        "prompt", "target", "target_item_id", "history_titles", "history_item_ids", "user_id",
    ]


@needs_real_data
def test_real_rows_match_the_csv_and_the_catalog(industrial):
    catalog, splits = industrial
    test = splits["test"]
    path = SHARED_DATA / "amazon" / "test" / f"{INDUSTRIAL_FILE}.csv"
    with open(path, encoding="utf-8", newline="") as f:
        raw = list(csv.DictReader(f))
    assert len(raw) == test.num_rows
    instructions = [s.replace("{category}", "industrial and scientific items") for s in DEFAULT_INSTRUCTIONS]
    for row, ex in zip(raw, test):
        assert ex["target"] in catalog
        assert ex["target"] == row["item_title"] == catalog.title_of(int(row["item_id"]))
        assert ex["target_item_id"] == int(row["item_id"])
        assert ex["history_item_ids"] == ast.literal_eval(row["history_item_id"])[-10:]
        assert ex["history_titles"] == ast.literal_eval(row["history_item_title"])[-10:]
        assert 1 <= len(ex["history_titles"]) <= 10
        assert ex["user_id"] == row["user_id"]
        prompt = ex["prompt"]
        noun = "industrial and scientific items"
        assert any(prompt == expected_prompt(i, noun, ex["history_titles"]) for i in instructions)
        # History titles appear in order, oldest first.
        cursor = 0
        for title in ex["history_titles"]:
            cursor = prompt.index(f'"{title}"', cursor) + len(title) + 2


@needs_real_data
def test_real_every_target_in_catalog_and_all_instructions_used(industrial):
    catalog, splits = industrial
    for split in splits.values():
        assert all(t in catalog for t in split["target"])
        assert all(catalog.title_of(i) == t for i, t in zip(split["target_item_id"], split["target"]))
    valid_prompts = list(splits["valid"]["prompt"])
    used = {i for i, s in enumerate(DEFAULT_INSTRUCTIONS) if any(
        s.replace("{category}", "industrial and scientific items") in p for p in valid_prompts[:400])}
    assert used == set(range(11))


@needs_real_data
def test_real_instruction_seeding_is_reproducible(industrial):
    catalog, splits = industrial
    path = SHARED_DATA / "amazon" / "valid" / f"{INDUSTRIAL_FILE}.csv"
    again = load_amazon_split(path, catalog, seed=42)
    assert list(again["prompt"]) == list(splits["valid"]["prompt"])
    other = load_amazon_split(path, catalog, seed=7)
    assert list(other["prompt"]) != list(again["prompt"])
    assert list(other["target"]) == list(again["target"])


def test_instruction_seeding_does_not_depend_on_the_process():
    # Import trl_rere.data without the package __init__ (which pulls in TRL) to keep the subprocesses quick.
    code = (
        "import hashlib, sys, types\n"
        "pkg = types.ModuleType('trl_rere'); pkg.__path__ = [sys.argv[1]]; sys.modules['trl_rere'] = pkg\n"
        "from trl_rere.data import instruction_index, synthetic_catalog_dataset\n"
        "_, ds = synthetic_catalog_dataset(num_items=16, num_users=50, seed=3)\n"
        "picks = [instruction_index(3, r) for r in range(1000)]\n"
        "print(hashlib.sha256(('\\x00'.join(ds['prompt']) + str(picks)).encode()).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code, str(REPO / "trl_rere")], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    _, ds = synthetic_catalog_dataset(num_items=16, num_users=50, seed=3)
    picks = [instruction_index(3, r) for r in range(1000)]
    here = hashlib.sha256(("\x00".join(ds["prompt"]) + str(picks)).encode()).hexdigest()
    assert digests == {here}


# -- malformed files ------------------------------------------------------------------------------------------------
@pytest.fixture
def small_catalog():
    return ItemCatalog.from_titles(['Red "Big" Ball', "Blue Car, large", "Green Kite", "Yellow Duck"])


def _row(user, hist_ids, hist_titles, item_id, item_title):
    return {
        "user_id": user, "item_asins": "[]", "item_asin": "X", "history_item_id": hist_ids, "item_id": item_id,
        "history_item_title": hist_titles, "item_title": item_title, "history_rating": "[]", "rating": "5.0",
        "history_timestamp": "[]", "timestamp": "0",
    }


GOOD = _row("u1", "[0, 1]", str(['Red "Big" Ball', "Blue Car, large"]), "2", "Green Kite")


def _write(tmp_path, rows, name="Toys_and_Games_5_2016-10-2018-11.csv"):
    path = tmp_path / name
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow(r)
    return path


def test_small_file_parses(tmp_path, small_catalog):
    ds = load_amazon_split(_write(tmp_path, [GOOD]), small_catalog)
    ex = ds[0]
    assert ex["target"] == "Green Kite" and ex["target_item_id"] == 2
    assert ex["history_titles"] == ['Red "Big" Ball', "Blue Car, large"]
    assert ex["history_item_ids"] == [0, 1]
    assert 'toys and gamess before: "Red "Big" Ball",\t"Blue Car, large"\n\n### Response:\n' in ex["prompt"]


BAD_ROWS = [
    (_row("u", "[0, 1", "['a']", "2", "Green Kite"), "not a Python list literal"),
    (_row("u", "[0, 1]", str(['Red "Big" Ball']), "2", "Green Kite"), "history_item_id has 2 items but history_item_t"),
    (_row("u", "[0]", str(['Red "Big" Ball']), "99", "Green Kite"), "target item id 99 is not in the catalog"),
    (_row("u", "[0]", str(['Red "Big" Ball']), "2", "Purple Kite"), "differs from the catalog's title"),
    (_row("u", "['0']", str(['Red "Big" Ball']), "2", "Green Kite"), "expected int"),
    (_row("u", "[0]", str(['Red "Big" Ball']), "two", "Green Kite"), "item_id"),
    (_row("u", "__import__('os').getcwd()", "[]", "2", "Green Kite"), "not a Python list literal"),
    (_row("u", "[]", "[]", "2", "Green Kite"), "the history is empty"),
    (_row("u", "[7]", "['Ghost']", "2", "Green Kite"), "history item id 7"),
]


@pytest.mark.parametrize("bad,message", BAD_ROWS)
def test_malformed_row_names_file_row_and_line(tmp_path, small_catalog, bad, message):
    # The first good row spans two lines (a quoted newline), so the bad record is data row 3 starting at line 5.
    multiline = dict(GOOD, user_id="user\nwith newline")
    path = _write(tmp_path, [GOOD, multiline, bad])
    with pytest.raises(DataError) as err:
        load_amazon_split(path, small_catalog)
    text = str(err.value)
    assert str(path) in text
    assert "data row 3 (line 5)" in text
    assert message in text


def test_extra_fields_are_an_error(tmp_path, small_catalog):
    path = _write(tmp_path, [GOOD])
    with open(path, "a", encoding="utf-8") as f:
        f.write('u2,[],X,[0],2,"[\'Red ""Big"" Ball\']",Green Kite,[],5.0,[],0,SURPLUS\n')
    with pytest.raises(DataError, match=r"data row 2 \(line 3\).*more fields"):
        load_amazon_split(path, small_catalog)


def test_missing_column_is_reported(tmp_path, small_catalog):
    path = tmp_path / "Yelp_5.csv"
    path.write_text("user_id,item_id\nu,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Yelp_5\.csv.*missing column\(s\) history_item_id"):
        load_amazon_split(path, small_catalog)


def test_skip_mode_counts_and_warns_once(tmp_path, small_catalog):
    rows = [GOOD, BAD_ROWS[0][0], GOOD, BAD_ROWS[2][0], BAD_ROWS[3][0], GOOD]
    path = _write(tmp_path, rows)
    with pytest.warns(UserWarning) as record:
        ds = load_amazon_split(path, small_catalog, on_error="skip")
    assert ds.num_rows == 3
    messages = [str(w.message) for w in record if "skipped" in str(w.message)]
    assert len(messages) == 1
    assert "skipped 3 malformed row(s) of 6" in messages[0]
    assert "row 2 (line 3), row 4 (line 5), row 5 (line 6)" in messages[0]


def test_bad_arguments(tmp_path, small_catalog):
    path = _write(tmp_path, [GOOD])
    with pytest.raises(ValueError, match="on_error"):
        load_amazon_split(path, small_catalog, on_error="ignore")
    with pytest.raises(ValueError, match="max_history"):
        load_amazon_split(path, small_catalog, max_history=0)
    with pytest.raises(FileNotFoundError, match="interaction file not found"):
        load_amazon_split(tmp_path / "nope.csv", small_catalog)


def test_category_from_file_name_or_argument(tmp_path, small_catalog):
    path = _write(tmp_path, [GOOD], name="Office_Products_5_x.csv")
    assert "office productss before" in load_amazon_split(path, small_catalog)[0]["prompt"]
    unknown = _write(tmp_path, [GOOD], name="interactions.csv")
    with pytest.raises(DataError, match="pass category="):
        load_amazon_split(unknown, small_catalog)
    assert "toys and gamess before" in load_amazon_split(unknown, small_catalog, category="Toys_and_Games")[0]["prompt"]


def test_max_history_truncates_to_the_most_recent(tmp_path, small_catalog):
    row = _row("u", "[0, 1, 3]", str(['Red "Big" Ball', "Blue Car, large", "Yellow Duck"]), "2", "Green Kite")
    ds = load_amazon_split(_write(tmp_path, [row]), small_catalog, max_history=2)
    assert ds[0]["history_item_ids"] == [1, 3]
    assert 'Red "Big" Ball' not in ds[0]["prompt"]


def test_load_amazon_reports_what_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_amazon(tmp_path, "Toys_and_Games", splits=("train",))
    text = str(err.value)
    assert str(tmp_path / "info" / "Toys_and_Games_5_*.txt") in text
    assert str(tmp_path / "train" / "Toys_and_Games_5_*.csv") in text
    assert "sober-clever/ReRe" in text


def test_load_amazon_finds_files_by_glob(tmp_path, small_catalog):
    root = tmp_path / "amazon"
    (root / "info").mkdir(parents=True)
    (root / "info" / "Toys_and_Games_5_2016-10-2018-11.txt").write_text(
        "".join(f"{t}\t{i}\n" for i, t in enumerate(small_catalog.titles)), encoding="utf-8"
    )
    (root / "test").mkdir()
    _write(root / "test", [GOOD, GOOD])
    catalog, splits = load_amazon(tmp_path, "Toys_and_Games", splits=("test",), seed=1)
    assert list(splits) == ["test"] and splits["test"].num_rows == 2
    assert catalog.titles == small_catalog.titles


# -- synthetic ------------------------------------------------------------------------------------------------------
def test_synthetic_dataset_has_a_learnable_rule():
    catalog, ds = synthetic_catalog_dataset(num_items=40, num_users=300, history_len=(2, 5), seed=3)
    assert catalog.num_items == 40 and len(catalog) == 40
    successor = {}
    for ex in ds:
        assert ex["target"] in catalog
        assert catalog.item_ids(ex["target"]) == [ex["target_item_id"]]
        assert [catalog.title_of(i) for i in ex["history_item_ids"]] == ex["history_titles"]
        assert 2 <= len(ex["history_titles"]) <= 5
        assert ex["prompt"].endswith("### Response:\n")
        assert "toys and gamess before" in ex["prompt"]
        # The next item is a function of the last history item.
        assert successor.setdefault(ex["history_titles"][-1], ex["target"]) == ex["target"]
        assert ex["target"] not in ex["history_titles"]
    titles = catalog.titles
    assert any(a != b and b.startswith(a) for a in titles for b in titles), "some titles should prefix others"
    assert any('"' in t for t in titles) and any("," in t for t in titles)


def test_synthetic_dataset_is_deterministic_and_splittable():
    a = synthetic_catalog_dataset(num_items=16, num_users=20, seed=5)
    b = synthetic_catalog_dataset(num_items=16, num_users=20, seed=5)
    c = synthetic_catalog_dataset(num_items=16, num_users=20, seed=6)
    assert a[0].titles == b[0].titles and a[1].to_dict() == b[1].to_dict()
    assert a[1].to_dict() != c[1].to_dict()
    splits = a[1].train_test_split(test_size=0.25, seed=0)
    assert splits["train"].num_rows == 15 and splits["test"].num_rows == 5
    json.dumps(a[1][0])  # plain, serialisable rows


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_items"):
        synthetic_catalog_dataset(num_items=1)
    with pytest.raises(ValueError, match="history_len"):
        synthetic_catalog_dataset(history_len=(3, 2))
