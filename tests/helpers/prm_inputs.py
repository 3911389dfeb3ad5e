"""Inputs for PRM tests: a question and random arithmetic steps."""

from __future__ import annotations

import random

QUESTION = "Compute 7 + 5 * 3 - 4."


def random_steps(rng: random.Random, k: int) -> list[str]:
    return [f"{rng.randint(1, 99)} * {rng.randint(1, 9)} = {rng.randint(1, 999)}" for _ in range(k)]
