"""Best-of-N: sample N complete answers, score each with the PRM, keep the highest.

candidates = sample(N)
for c in candidates: c.score = aggregate(PRM(c.steps))
return argmax_c c.score
"""

from __future__ import annotations

from rfprm_tts.strategies.base import SampleThenChoose, SearchOutcome, best_outcome, register
from rfprm_tts.trajectory import Candidate


@register
class BestOfN(SampleThenChoose):
    name = "best_of_n"

    def choose(self, candidates: list[Candidate]) -> SearchOutcome:
        return best_outcome(candidates)
