"""Packages whose names are imported on first use (PEP 562), as transformers' are: `import trl_rere` and the data
commands then load no torch, TRL or `datasets` until a name that needs them is used."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, api: dict[str, tuple[str, ...]], namespace: dict):
    """`(module_of, __getattr__, __dir__)` for `package`, whose submodule `m` provides the names `api[m]`; a name is
    imported when first looked up and then kept in `namespace` (the package's globals), so later look-ups are plain.

    Example:
    ```python
    >>> from trl_rere._lazy import lazy_exports
    >>> namespace = {}
    >>> module_of, getattr_, _ = lazy_exports("trl_rere", {"item_format": ("get_item_format",)}, namespace)
    >>> getattr_("get_item_format")("sid").name, "get_item_format" in namespace
    ('sid', True)
    ```
    """
    module_of = {name: module for module, names in api.items() for name in names}

    def __getattr__(name: str):
        if name in module_of:
            value = getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(module_of))

    return module_of, __getattr__, __dir__
