"""Search strategies, installed as `rfprm_tts.strategies`. Importing this package registers
the built-in strategies."""

from rfprm_tts.strategies import (  # noqa: F401  (importing registers the built-ins)
    adaptive_vote,
    beam_search,
    best_of_n,
    dvts,
    early_pruning,
    particle_filtering,
    voting,
)
from rfprm_tts.strategies.base import (
    BaseStrategy,
    SearchOutcome,
    Strategy,
    StrategyParams,
    available_strategies,
    build_strategy,
    register,
)

__all__ = [
    "BaseStrategy",
    "SearchOutcome",
    "Strategy",
    "StrategyParams",
    "available_strategies",
    "build_strategy",
    "register",
]
