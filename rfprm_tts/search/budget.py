"""A solve's token budget, and the meter that sizes each request to what is left."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rfprm_tts.trajectory import Usage


@dataclass(frozen=True)
class TokenBudget:
    """A solve's token budget: `limit` tokens, counting generated tokens or generated + PRM
    tokens ("total"). The search context sends no request once it is spent and sizes each
    request (or round of requests) to what is left at the cost per sample seen so far; a
    request's samples may each take at most what is left. So the budget is overrun by at most
    what the last request (or round) cost beyond that estimate, plus, counting "total", the
    PRM call that scores it."""

    limit: int
    counts: Literal["generated", "total"] = "generated"


class BudgetMeter:
    """What a solve has spent against its budget (read from its `usage`), and what the next
    request may ask for. Without a budget everything is affordable."""

    def __init__(self, budget: TokenBudget | None, usage: Usage, max_tokens: int):
        self.budget, self.usage, self.max_tokens = budget, usage, max_tokens
        self.samples_back = 0  # samples returned so far: the cost per sample is spent / this
        if budget is not None:
            usage.token_budget, usage.budget_counts = budget.limit, budget.counts

    @property
    def spent(self) -> int:
        """Tokens spent as the budget counts them (generated, or generated + PRM)."""
        prm = self.usage.prm_tokens if self.budget and self.budget.counts == "total" else 0
        return self.usage.generated_tokens + self.usage.side_generated_tokens + prm  # a draft's, a selector's too

    @property
    def left(self) -> int | None:
        return None if self.budget is None else self.budget.limit - self.spent

    def affordable(self, samples: int, max_tokens: int | None = None) -> int:
        """How many of `samples` more samples (each at most `max_tokens`, default the answer's)
        the budget has room for: all without a budget; before any sample is back, as many as
        fit if each ran to its limit; then at the cost per sample seen so far. At least 1
        while any budget is left, 0 once it is spent (either way `usage` says it bound)."""
        left = self.left
        if left is None:
            return samples
        if left <= 0:
            self.usage.budget_exhausted = True
            return 0
        if self.samples_back:
            fit = int(left * self.samples_back / max(1, self.spent))
        else:
            fit = left // max(1, min(self.max_tokens, max_tokens or self.max_tokens))
        if fit < samples:
            self.usage.budget_exhausted = True
        return min(samples, max(1, fit))

    def first_round_share(self, samples: int) -> int | None:
        """Before any sample is back, a round of steps (short) goes whole, each step given an
        equal share of what is left; None when that does not apply."""
        left = self.left
        if left is None or self.samples_back or left <= 0:
            return None
        return max(1, left // samples)

    def cap(self, limit: int, ways: int = 1) -> int:
        """A sample's token limit: `limit`, or less when the budget has less left (shared
        equally by `ways` requests sent at once)."""
        left = self.left
        return limit if left is None else min(limit, max(1, left // ways))

    def cut_note(self) -> str:
        assert self.budget is not None  # only a budget cuts a sample short
        return f"cut short by the solve's token budget ({self.budget.limit} tokens)"
