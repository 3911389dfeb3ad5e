"""Public names imported on first use, so `import rfprm_tts` (or the CLI's `--help`) does not load
torch or the generator backends."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, public: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A package's `__getattr__` that imports each public name from its module on first use."""

    def __getattr__(name: str) -> Any:
        if name not in public:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(public[name]), name)
        namespace[name] = value
        return value

    return __getattr__
