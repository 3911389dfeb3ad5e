"""Search strategies, installed as `rfprm_tts.strategies`. Importing this package registers
the built-in strategies.

Everything a plug-in strategy needs is here: the base class and its registry, the search context
it runs in, the candidates it handles, and the ranking and voting helpers the built-ins use
(examples/custom_strategy shows a plug-in in a package of its own).
"""

from rfprm_tts.grading.equivalence import vote
from rfprm_tts.search.context import SearchContext
from rfprm_tts.strategies import (  # noqa: F401  (importing registers the built-ins)
    adaptive_vote,
    beam_search,
    best_of_n,
    dvts,
    early_pruning,
    genselect,
    mcts,
    particle_filtering,
    speculative,
    voting,
)
from rfprm_tts.strategies.base import (
    BaseStrategy,
    SearchOutcome,
    Strategy,
    StrategyParams,
    available_strategies,
    best_outcome,
    build_strategy,
    rank,
    register,
)
from rfprm_tts.trajectory import Candidate

__all__ = [
    "BaseStrategy",
    "Candidate",
    "SearchContext",
    "SearchOutcome",
    "Strategy",
    "StrategyParams",
    "available_strategies",
    "best_outcome",
    "build_strategy",
    "rank",
    "register",
    "vote",
]
