"""Shared test fixtures: where the shared data lives, small tokenizers of the three families and tiny models.

Plain helpers and constants live in `rere_test_utils` (a module name of its own, because `tests/distributed` has a
conftest too and `from conftest import ...` would be ambiguous). Session-scoped fixtures are built once per test run;
treat them as read-only (a test that needs to modify a model, e.g. switch it to train mode, should build its own with
`trl_rere.testing.tiny_causal_lm`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rere_test_utils import DATA_DIR, QWEN2_TOKENIZER_DIR, TOYS_INFO, get_tiny_model, get_tokenizer

from trl_rere.testing import TOKENIZER_KINDS


def pytest_addoption(parser):
    parser.addoption(
        "--run-benchmark-tests",
        action="store_true",
        help="also run the tests marked `benchmark` (benchmarks/_cpu.py's shims, which patch TRL privately)",
    )


def pytest_collection_modifyitems(config, items):
    """Leaves the `benchmark` tests out unless `--run-benchmark-tests` is given.

    They test code that only the benchmark scripts import (benchmarks/_cpu.py patches TRL's private log-prob tiles),
    so a change in TRL's internals should not fail the library's suite. An option rather than `-m "not benchmark"`
    in addopts: a `-m` on the command line (`-m "not distributed"`, as the README suggests) would replace that one and
    bring them back."""
    if config.getoption("--run-benchmark-tests"):
        return
    selected = [item for item in items if item.get_closest_marker("benchmark") is None]
    if len(selected) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("benchmark")])
        items[:] = selected


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory; tests that use it are skipped when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared data directory not found at {DATA_DIR} (the real Amazon catalogs are not available)")
    return DATA_DIR


@pytest.fixture(scope="session")
def toys_info_path(data_dir: Path) -> Path:
    """The real Amazon Toys-and-Games catalog (`title<TAB>item_id` per line, 11,252 items)."""
    if not TOYS_INFO.is_file():
        pytest.skip(f"the Toys catalog is not available at {TOYS_INFO}")
    return TOYS_INFO


@pytest.fixture(scope="session")
def qwen2_tokenizer():
    """Qwen2's own tokenizer (the paper's backbone), loaded offline; skipped when the shared copy is absent."""
    if not (QWEN2_TOKENIZER_DIR / "tokenizer.json").is_file():
        pytest.skip(f"the Qwen2 tokenizer is not available at {QWEN2_TOKENIZER_DIR}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN2_TOKENIZER_DIR)


@pytest.fixture(scope="session")
def tokenizers() -> dict:
    """`{kind: tokenizer}` for the three families."""
    return {kind: get_tokenizer(kind) for kind in TOKENIZER_KINDS}


@pytest.fixture(scope="session", params=TOKENIZER_KINDS)
def tokenizer_kind(request) -> str:
    """Parametrizes a test over the three tokenizer families."""
    return request.param


@pytest.fixture(scope="session")
def tokenizer(tokenizer_kind):
    return get_tokenizer(tokenizer_kind)


@pytest.fixture(scope="session")
def tiny_model(tokenizer_kind):
    """A tiny random Qwen2 in eval mode; shared, do not modify it."""
    return get_tiny_model(tokenizer_kind)
