"""The house rules a newcomer relies on, checked on the source: imports flow one way between
rooms, no module is over 400 lines, the package root holds the public face and the shared
vocabulary only, and `__init__.py` files hold no logic."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first: a module may import from its own level and below, never above. The most
# specific prefix decides a module's level (runtime/files.py is a leaf, the rest of runtime/ is not).
LEVELS = [
    ("leaves", ["rfprm_tts.errors", "rfprm_tts.text", "rfprm_tts.runtime.files", "rfprm_tts.runtime.lazy"]),
    ("settings", ["rfprm_tts.settings"]),
    ("vocabulary", ["rfprm_tts.trajectory", "rfprm_tts.chat", "rfprm_tts.runtime", "rfprm_tts.grading"]),
    ("backends", ["rfprm_tts.generators", "rfprm_tts.prm"]),
    ("search", ["rfprm_tts.search"]),
    ("strategies", ["rfprm_tts.strategies"]),
    ("solver", ["rfprm_tts.solver"]),
    (
        "applications",
        ["rfprm_tts.offline", "rfprm_tts.bench", "rfprm_tts.serve", "rfprm_tts.rewards", "rfprm_tts.demo"],
    ),
    ("cli", ["rfprm_tts.cli"]),
]


def level(module: str) -> int | None:
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LEVELS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1] if matches else None


def sources() -> dict[str, Path]:
    """Every module of the installed package by its dotted name (strategies/ is rfprm_tts.strategies)."""
    found = {}
    for folder, package in ((ROOT / "rfprm_tts", "rfprm_tts"), (ROOT / "strategies", "rfprm_tts.strategies")):
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            found[".".join(parts).removesuffix(".__init__")] = path
    return found


def test_imports_flow_one_way():
    backwards = []
    for module, path in sources().items():
        here = level(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rfprm_tts."):
                there = level(node.module)
                if here is not None and there is not None and there > here:
                    backwards.append(f"{module} ({LEVELS[here][0]}) imports {node.module} ({LEVELS[there][0]})")
    assert not backwards, "\n".join(backwards)


def test_every_module_knows_its_level():
    unplaced = [m for m in sources() if m != "rfprm_tts" and level(m) is None]
    assert not unplaced, f"add these to LEVELS (and to the README's layout): {unplaced}"


def test_no_module_is_over_400_lines():
    long = {m: n for m, p in sources().items() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_the_package_root_holds_the_public_face_and_the_vocabulary_only():
    root = sorted(p.name for p in (ROOT / "rfprm_tts").glob("*.py"))
    assert len(root) <= 12, root


def test_init_files_hold_no_logic():
    """Docstrings, imports, `__all__` and the lazy-export table only: no functions or classes."""
    logic = [
        f"{module}: {node.name}"
        for module, path in sources().items()
        if path.name == "__init__.py"
        for node in ast.parse(path.read_text()).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    assert not logic, logic
