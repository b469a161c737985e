"""The docstring examples of the public API run as written: each module's doctests, in a scratch folder.

Examples build what they need with the package's offline helpers (`trl_rere.testing`, synthetic catalogs), so they
need no hub, no GPU and no data folder.
"""

import doctest
import importlib
import pkgutil
import re

import pytest

import trl_rere


# every module, subpackages included (trl_rere.data.*, trl_rere.decoding.*)
MODULES = sorted(m.name for m in pkgutil.walk_packages(trl_rere.__path__, "trl_rere."))
FENCE = re.compile(r"^[ \t]*```[\w-]*[ \t]*$", re.MULTILINE)


class FencedParser(doctest.DocTestParser):
    """Docstrings write examples in Markdown code fences, as transformers' and TRL's do; a closing fence right after
    an expected output is not part of that output."""

    def parse(self, string, name="<string>"):
        return super().parse(FENCE.sub("", string), name)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write (a saved model, an output folder)
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(parser=FencedParser(), exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} docstring examples of {name} failed"


def test_public_classes_have_examples():
    """Every public class and entry point documents a runnable example (plain records and exceptions aside)."""
    finder = doctest.DocTestFinder(parser=FencedParser(), exclude_empty=False)
    records = set()
    missing = []
    for name in trl_rere.__all__:
        obj = getattr(trl_rere, name)
        if name in records or not callable(obj) or isinstance(obj, type) and issubclass(obj, Exception):
            continue
        (test, *_) = finder.find(obj, name)
        if not test.examples:
            missing.append(name)
    assert not missing, f"no docstring example: {missing}"
