"""The token budget (search/budget.py): the meter's arithmetic, and a solve that holds to it
(best_of_n on deterministic backends, so each request's size can be worked out by hand)."""

from helpers.fakes import DigitScorer, ListGenerator
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.search.budget import BudgetMeter, TokenBudget
from rfprm_tts.trajectory import Usage

SEVEN = "3 + 4 = 7\n\n\\boxed{7}"


def meter(limit: int | None, counts="generated", generated=0, prm=0, max_tokens=50) -> BudgetMeter:
    usage = Usage(generated_tokens=generated, prm_tokens=prm)
    return BudgetMeter(None if limit is None else TokenBudget(limit, counts), usage, max_tokens)


def test_the_meter_counts_what_the_budget_counts():
    """30 generated and 20 PRM tokens spent: 70 left of 100 counting generated tokens, 50
    counting both; the budget is written into the solve's usage."""
    generated = meter(100, generated=30, prm=20)
    total = meter(100, "total", generated=30, prm=20)
    assert (generated.spent, generated.left) == (30, 70)
    assert (total.spent, total.left) == (50, 50)
    assert (total.usage.token_budget, total.usage.budget_counts) == (100, "total")
    unbounded = meter(None, generated=10_000)
    assert unbounded.left is None and unbounded.affordable(64) == 64 and unbounded.cap(512) == 512
    assert unbounded.first_round_share(8) is None and unbounded.usage.token_budget is None


def test_the_meter_sizes_requests_to_what_is_left():
    """Limit 100, answers of at most 30 tokens. Nothing back yet: 100 // 30 = 3 samples fit,
    and a first round of 8 steps gets 100 // 8 = 12 tokens a step. After 4 samples that cost
    40 in all (10 each): 60 left affords 6. A sample may take at most what is left, and at
    least 1 token; once spent, nothing is affordable and the usage says the budget bound."""
    m = meter(100, max_tokens=30)
    assert m.affordable(2) == 2 and not m.usage.budget_exhausted
    assert m.affordable(8) == 3 and m.usage.budget_exhausted
    assert m.affordable(8, max_tokens=20) == 5  # a request's own lower limit fits more
    assert m.first_round_share(8) == 12 and m.first_round_share(1000) == 1
    m.usage.generated_tokens, m.samples_back = 40, 4
    assert m.affordable(16) == 6 and m.first_round_share(8) is None  # the cost per sample is known now
    assert m.cap(50) == 50 and m.cap(100) == 60
    m.usage.generated_tokens = 99
    assert m.affordable(16) == 1 and m.cap(50) == 1  # 1 left: still one sample
    m.usage.generated_tokens = 130
    assert m.affordable(1) == 0 and m.cap(50) == 1
    assert "100 tokens" in m.cut_note()


def test_a_token_budget_sizes_each_request_to_what_is_left():
    """best_of_n, N = 16, samples of 21 tokens, max_tokens 50, budget 200 generated tokens.
    Nothing known yet: 200 // 50 = 4 samples (84 tokens). Then at 21 a sample: 116 left
    affords 5 (189). 11 left: 1 more sample, which may take at most 11 tokens (a real server
    stops it there; this fake does not, so it spends 21). Then nothing is left: no request."""
    gen = ListGenerator([SEVEN + " "])
    assert len(gen.texts[0]) == 21
    settings = Settings.load(strategy="best_of_n", generator={"max_tokens": 50}, prm={"aggregation": "last"})
    result = ReasoningSolver(settings, generator=gen, scorer=DigitScorer()).solve(
        "Compute 3 + 4.", n=16, token_budget=200
    )
    assert [r.n for r in gen.requests] == [4, 5, 1]
    assert [r.sampling.max_tokens for r in gen.requests] == [50, 50, 11]
    assert result.usage.generated_tokens == 210 and len(result.candidates) == 10
    assert result.usage.token_budget == 200 and result.usage.budget_exhausted and result.answer == "7"
    # without a budget: one request of 16, and usage says there was none
    result = ReasoningSolver(settings, generator=ListGenerator(gen.texts), scorer=DigitScorer()).solve("q", n=16)
    assert result.usage.token_budget is None and not result.usage.budget_exhausted


def test_a_sample_the_budget_cut_short_is_not_an_answer():
    """A server stops a sample at the request's max_tokens. Budget 70, samples of 21, max_tokens
    50: 1 sample (70 // 50), then 2 (49 left at 21 each), then 1 capped at the 7 left: cut
    there, it is kept with its error and never wins, though the PRM would rank it first."""

    class Honest(ListGenerator):
        async def generate(self, request):
            result = await super().generate(request)
            limit = request.sampling.max_tokens
            for c in result.completions:
                if c.tokens > limit:
                    result.generated_tokens -= c.tokens - limit
                    c.text, c.tokens, c.finish_reason = "9" * limit, limit, "length"
            return result

    gen = Honest([SEVEN + " "])
    settings = Settings.load(strategy="best_of_n", generator={"max_tokens": 50}, prm={"aggregation": "last"})
    result = ReasoningSolver(settings, generator=gen, scorer=DigitScorer()).solve(
        "Compute 3 + 4.", n=4, token_budget=70
    )
    assert [r.n for r in gen.requests] == [1, 2, 1] and result.usage.generated_tokens == 70
    cut = [c for c in result.candidates if not c.ok]
    assert len(cut) == 1 and "token budget" in cut[0].error and cut[0].generated_tokens == 7
    assert result.answer == "7" and result.best.ok
