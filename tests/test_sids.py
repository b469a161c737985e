"""Semantic IDs from item text (`trl_rere.data.build_sids`, `examples/prepare_data.py sids`, `reproductions/sid_quality.py`):
distinct SIDs, collision statistics, determinism, bad inputs, and the round trip through `load_amazon(...,
item_format="sid")`."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trl_rere import load_amazon
from trl_rere.data import DataError
from trl_rere.data.build_sids import build_semantic_ids, embed_texts, make_sid_dataset, read_item_metadata
from trl_rere.testing import write_amazon_folder, write_minionerec_folder

REPO = Path(__file__).resolve().parents[1]
CATEGORY = "Toys_and_Games"


def clustered(n_groups=6, per_group=8, dim=6, dup=0, seed=0):
    """Points around a few centres, plus `dup` exact copies of the first point (items with the same text)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(n_groups, dim))
    x = np.concatenate([c + rng.normal(size=(per_group, dim)) for c in centres])
    return np.concatenate([x, np.repeat(x[:1], dup, axis=0)]).astype(np.float32)


@pytest.mark.parametrize("method", ["rqkmeans", "rqkmeans-balanced", "rqvae"])
def test_every_item_gets_a_distinct_sid_and_the_same_seed_gives_the_same_sids(method):
    x = clustered(dup=5)
    kwargs = {"epochs": 3} if method == "rqvae" else {}
    sids, stats = build_semantic_ids(x, method, levels=3, codebook_size=4, seed=1, **kwargs)
    assert len(sids) == len(x) == stats.num_items and len(set(sids)) == len(sids)
    assert all(s.count("<") == 3 and s.startswith("<a_") for s in sids)
    assert stats.prefix_usage[-1] == len(x) and len(stats.usage_per_level) == 3
    assert all(0 < u <= 1 for u in stats.usage_per_level)
    again, stats_again = build_semantic_ids(x, method, levels=3, codebook_size=4, seed=1, **kwargs)
    assert again == sids and stats_again == stats


def test_collision_stats_count_the_items_that_had_to_move_and_keep_their_prefix():
    x = clustered(dup=3)  # 4 identical rows: one raw SID for all four, three of them moved
    sids, stats = build_semantic_ids(x, "rqkmeans", levels=2, codebook_size=8, seed=0)
    twins = [sids[0]] + sids[-3:]
    assert len(set(twins)) == 4
    assert len({s[: s.index("><") + 1] for s in twins}) == 1  # moved at the last level only: same first code
    assert stats.colliding_items >= 3 and stats.max_items_per_sid >= 4
    assert stats.collision_rate == pytest.approx(stats.colliding_items / len(x))
    assert stats.moved_above_last_level == 0
    assert "collisions before resolution" in stats.to_text()


def test_a_full_prefix_sends_items_up_a_level():
    x = np.repeat(np.arange(3, dtype=np.float32)[:, None], 5, axis=0)  # 3 distinct points, 5 items each
    sids, stats = build_semantic_ids(np.hstack([x, x]), "rqkmeans", levels=2, codebook_size=4, seed=0)
    assert len(set(sids)) == 15
    assert stats.moved_above_last_level > 0  # 5 items, 4 last-level codes under their prefix


def test_different_seeds_can_differ_but_each_is_valid():
    x = clustered(n_groups=8, per_group=6)
    a, _ = build_semantic_ids(x, "rqkmeans", levels=2, codebook_size=8, seed=0)
    b, _ = build_semantic_ids(x, "rqkmeans", levels=2, codebook_size=8, seed=5)
    assert len(set(a)) == len(set(b)) == len(x)


def test_a_codebook_size_per_level():
    x = clustered()
    sids, stats = build_semantic_ids(x, "rqkmeans", levels=2, codebook_size=[2, 32], seed=0)
    assert len(set(sids)) == len(x) and {s[: s.index(">") + 1] for s in sids} == {"<a_0>", "<a_1>"}
    assert stats.codebook_size == [2, 32] and stats.usage_per_level[0] == 1.0
    with pytest.raises(ValueError, match="one per level"):
        build_semantic_ids(x, levels=3, codebook_size=[4, 4])


def test_bad_quantiser_arguments_are_refused():
    x = clustered()
    with pytest.raises(ValueError, match=r"48 items do not fit in 2 levels x 4 codes \(16 SIDs\)"):
        build_semantic_ids(x, levels=2, codebook_size=4)
    with pytest.raises(ValueError, match="method must be one of"):
        build_semantic_ids(x, "kmeans", levels=3, codebook_size=4)
    with pytest.raises(ValueError, match="codebook_size must be"):
        build_semantic_ids(x, levels=3, codebook_size=1)
    with pytest.raises(ValueError, match="2-D"):
        build_semantic_ids(x[0], levels=3, codebook_size=4)
    same, _ = build_semantic_ids(np.zeros((10, 3)), levels=2, codebook_size=4)  # one text for every item
    assert len(set(same)) == 10


def test_npy_embeddings_are_checked(tmp_path):
    texts = ["a", "b", "c"]
    good = tmp_path / "good.npy"
    np.save(good, np.eye(3, 4))
    assert embed_texts(texts, str(good)).shape == (3, 4)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.eye(4))
    with pytest.raises(ValueError, match=r"wrong.npy: expected an array of shape \(3, d\).*got shape \(4, 4\)"):
        embed_texts(texts, str(wrong))
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"x": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="objects.npy: not a plain numeric"):
        embed_texts(texts, str(pickled))
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        embed_texts(texts, str(tmp_path / "missing.npy"))


def test_tfidf_embeddings_are_deterministic_and_normalised():
    texts = [f"red ball {k}" for k in range(5)] + [f"blue car model {k}" for k in range(5)]
    a, b = embed_texts(texts, "tfidf", dim=4, seed=0), embed_texts(texts, "tfidf", dim=4, seed=0)
    assert a.shape == (10, 4) and np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_sentence_transformers_encoder_from_a_local_folder(tmp_path):
    pytest.importorskip("sentence_transformers")
    from trl_rere.testing import tiny_causal_lm, train_tokenizer

    texts = ["Red Ball", "Blue Car", "Red Ball Pit", "Green Kite"]
    tok = train_tokenizer(texts)
    tok.save_pretrained(tmp_path / "encoder")
    tiny_causal_lm(tok).model.save_pretrained(tmp_path / "encoder")  # the decoder without its LM head
    x = embed_texts(texts, str(tmp_path / "encoder"))
    assert x.shape[0] == 4 and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)


def test_a_missing_sentence_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match="pip install sentence-transformers"):
        embed_texts(["a"], "some/model")


def write_metadata(path, data_dir, fmt):
    catalog, _ = load_amazon(data_dir, CATEGORY, splits=("test",))
    records = {i: {"title": t, "description": f"about {t}", "brand": "Acme"} for t in catalog.titles
               for i in catalog.item_ids(t)}
    if fmt == "json":
        path.write_text(json.dumps({str(i): r for i, r in records.items()}))
    else:
        path.write_text("".join(json.dumps({"item_id": i, **r}) + "\n" for i, r in records.items()))
    return records


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_round_trip_through_load_amazon_sid(tmp_path, fmt):
    src = write_amazon_folder(tmp_path / "titles", splits=("train", "valid", "test"))
    meta = tmp_path / f"items.{fmt}"
    records = write_metadata(meta, src, fmt)
    stats = make_sid_dataset(src, CATEGORY, tmp_path / "sids", encoder="tfidf", levels=2, codebook_size=8,
                             metadata=meta)
    titles, title_splits = load_amazon(src, CATEGORY, splits=("train", "valid", "test"))
    catalog, splits = load_amazon(tmp_path / "sids", CATEGORY, splits=("train", "valid", "test"), item_format="sid")
    assert len(catalog) == titles.num_items == stats.num_items  # distinct SIDs: one per item
    index = json.loads((tmp_path / "sids" / "index" / f"{CATEGORY}.index.json").read_text())
    items = json.loads((tmp_path / "sids" / "index" / f"{CATEGORY}.item.json").read_text())
    assert items["0"]["description"] == records[0]["description"]
    for split in ("train", "valid", "test"):
        a, b = title_splits[split], splits[split]
        assert a["target_item_id"] == b["target_item_id"] and a["user_id"] == b["user_id"]
        assert a["history_item_ids"] == b["history_item_ids"]
        assert all("".join(index[str(i)]) == sid for i, sid in zip(b["target_item_id"], b["target"]))
        assert all(titles.title_of(i) == t for i, t in zip(a["target_item_id"], a["target"]))


def test_metadata_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "items.jsonl"
    bad.write_text('{"item_id": 0, "title": "x"}\n{"item_id": 1, "title": \n')
    with pytest.raises(DataError, match=r"items.jsonl:2: not valid JSON"):
        read_item_metadata(bad)
    no_id = tmp_path / "noid.jsonl"
    no_id.write_text('{"title": "x"}\n')
    with pytest.raises(DataError, match=r"noid.jsonl:1: expected a JSON object with an 'item_id'"):
        read_item_metadata(no_id)
    lines = tmp_path / "lines.json"  # JSON lines under a .json name
    lines.write_text('{"item_id": 0, "title": "x"}\n{"item_id": 1, "title": "y"}\n')
    assert sorted(read_item_metadata(lines)) == [0, 1]
    broken = tmp_path / "broken.json"
    broken.write_text('{"0": {"title": "x"},')
    with pytest.raises(DataError, match="broken.json: not valid JSON"):
        read_item_metadata(broken)
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        read_item_metadata(tmp_path / "nothere.json")


def test_missing_title_layout_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="data directory not found"):
        make_sid_dataset(tmp_path / "nothing", CATEGORY, tmp_path / "out", encoder="tfidf")


def run_prepare(*args):
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(REPO / "examples" / "prepare_data.py"), "sids", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def test_prepare_data_sids_command(tmp_path):
    src = write_amazon_folder(tmp_path / "titles", splits=("valid", "test"))
    proc = run_prepare("--data_dir", src, "--category", CATEGORY, "--out", tmp_path / "sids", "--encoder", "tfidf",
                       "--levels", 2, "--codebook_size", 8, "--method", "rqkmeans-balanced")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "collisions before resolution" in proc.stdout and "codebook usage per level" in proc.stdout
    catalog, _ = load_amazon(tmp_path / "sids", CATEGORY, splits=("test",), item_format="sid")
    assert len(catalog) == 32


def test_prepare_data_sids_errors_exit_2_with_the_message(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "examples"))
    import prepare_data

    src = write_amazon_folder(tmp_path / "titles", splits=("test",))
    np.save(tmp_path / "e.npy", np.ones((3, 2)))
    common = ["--data_dir", str(src), "--category", CATEGORY, "--out", str(tmp_path / "x")]

    def fails(*argv) -> str:
        with pytest.raises(SystemExit) as stop:
            prepare_data.main(list(argv))
        assert stop.value.code == 2
        return capsys.readouterr().err

    assert "expected an array of shape (32, d)" in fails("sids", *common, "--encoder", str(tmp_path / "e.npy"))
    assert "32 items do not fit in 1 levels x 4 codes" in fails("sids", *common, "--encoder", "tfidf", "--levels",
                                                                 "1", "--codebook_size", "4")
    assert "data directory not found" in fails("sids", *common[2:], "--data_dir", str(tmp_path / "none"),
                                               "--encoder", "tfidf")
    assert "invalid choice: 'nonsense'" in fails("nonsense")


def test_sid_quality_benchmark_quick_on_a_tiny_folder(tmp_path):
    """reproductions/sid_quality.py --quick end to end on a tiny MiniOneRec-layout folder: both SID sets rank the same
    test users, and the table compares them."""
    from reproductions import sid_quality

    data = write_minionerec_folder(tmp_path / "minionerec", num_items=32, users_per_split=16)
    results = sid_quality.main(["--quick", "--data_dir", str(data), "--work_dir", str(tmp_path / "work"),
                                "--sets", "minionerec,tfidf-rqkmeans", "--seeds", "0", "--levels", "2",
                                "--codebook_size", "8", "--threads", "1"])
    assert set(results) == {"minionerec", "tfidf-rqkmeans"}
    users = [r["n_test"] for runs in results.values() for r in runs]
    assert users == [12, 12]
    assert not (tmp_path / "work" / "quick" / "title-layout").joinpath("index").exists()


@pytest.mark.slow
def test_toys_smoke_reads_the_written_sid_layout(tmp_path):
    """`examples/toys.py --smoke --item_format sid` trains and ranks on a folder written by `prepare_data.py sids`."""
    src = write_amazon_folder(tmp_path / "titles", category="Industrial_and_Scientific", splits=("valid", "test"),
                              users_per_split=24)
    make_sid_dataset(src, "Industrial_and_Scientific", tmp_path / "sids", encoder="tfidf", levels=2, codebook_size=8)
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
           "TOKENIZERS_PARALLELISM": "false", "TRL_EXPERIMENTAL_SILENCE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", str(REPO / "examples" / "toys.py"), "--smoke",
         "--item_format", "sid", "--data_dir", str(tmp_path / "sids"), "--output_dir", str(tmp_path / "run"),
         "--smoke_sft_steps", "5", "--max_eval_samples", "8"],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "catalog 32 items" in proc.stdout
    assert "| metric | before RL | after RL | random ranking |" in proc.stdout
