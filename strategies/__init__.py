"""Search strategies, installed as `rfprm_tts.strategies`. Importing this package registers
the built-in strategies."""

from rfprm_tts.strategies import best_of_n  # noqa: F401  (registers best_of_n)
from rfprm_tts.strategies.base import (
    SearchOutcome,
    Strategy,
    StrategyParams,
    available_strategies,
    build_strategy,
    register,
)

__all__ = [
    "SearchOutcome",
    "Strategy",
    "StrategyParams",
    "available_strategies",
    "build_strategy",
    "register",
]
