"""Repository-wide pytest settings, for the test suite and for `pytest --doctest-modules trl_rere` alike.

- Docstring examples save models and data folders under relative names (`tiny-model`, `rere-tiny`, ...): every
  doctest runs in its own temporary folder, so nothing lands in the folder pytest was started from.
- On a machine without CUDA, DeepSpeed logs "Setting accelerator to CPU" to stdout the first time anything asks for
  its accelerator, which lands inside whichever doctest happens to be first; naming the CPU accelerator up front
  (as `.ci/run` does) keeps the examples' output the same whatever runs before them.
"""

import os

import pytest


def pytest_configure(config):
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


@pytest.fixture(autouse=True)
def _doctest_in_tmp_path(request, tmp_path, monkeypatch):
    from _pytest.doctest import DoctestItem

    if isinstance(request.node, DoctestItem):
        monkeypatch.chdir(tmp_path)
