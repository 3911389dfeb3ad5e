"""Search logic on deterministic backends (tests/fakes.py), so the expected beams can be
worked out by hand. DigitScorer: a step scores its digit / 10; the answer step scores the
first digit of the sum / 10."""

import asyncio

import pytest

from helpers.fakes import DigitScorer, StepTreeGenerator
from rfprm_tts import ConfigError, ReasoningSolver, Settings


def solve(strategy: str, aggregation: str = "last", question: str = "q", **params):
    gen, scorer = StepTreeGenerator(depth=3), DigitScorer()
    settings = Settings.load(strategy=strategy, prm=dict(aggregation=aggregation))
    solver = ReasoningSolver(settings, generator=gen, scorer=scorer)
    return solver.solve(question, **params), gen, scorer


def test_beam_search_follows_the_best_partial_paths():
    # N=4, M=2, aggregation min.
    # round 1 (from the question): steps 1 2 3 4 -> keep the best 2: "4", "3"
    # round 2: each +{3, 4} -> 4|3 .3, 4|4 .4, 3|3 .3, 3|4 .3 -> keep 4|4 and 4|3 (first of the ties)
    # round 3: each +{5, 6} -> 4|4|5 .4, 4|4|6 .4, 4|3|5 .3, 4|3|6 .3 -> keep 4|4|5, 4|4|6
    # round 4: answers: 4+4+5=13 -> \boxed{13} (.1), 14 (.1) ... all finish; min = .1 for both:
    # the first (13) wins the tie.
    result, gen, scorer = solve("beam_search", "min", n=4, beam_width=2)
    assert result.answer == "13"
    assert result.best.trajectory.step_texts == ["4", "4", "5", "\\boxed{13}"]
    assert [r.prefix for r in gen.requests[:1]] == [""] and gen.requests[0].n == 4
    assert all(r.n == 2 for r in gen.requests[1:])
    assert len(gen.requests) == 1 + 2 * 3  # one root request, then 2 kept beams x 3 rounds
    assert scorer.calls == 4  # one PRM call per round for all beams
    assert result.usage.prm_calls == 4 and result.usage.generator_calls == len(gen.requests)
    # 4 + 4 + 4 one-token steps, then 4 two-token answers
    assert result.usage.generated_tokens == 4 + 4 + 4 + 4 * 2


def test_accounting_equals_what_the_backends_reported():
    for strategy in ("beam_search", "dvts", "early_pruning", "best_of_n"):
        result, gen, scorer = solve(strategy, n=4)
        # StepTreeGenerator reports prompt tokens = 1 + len(prefix) per request.
        assert result.usage.prompt_tokens == sum(1 + len(r.prefix) for r in gen.requests), strategy
        assert result.usage.generator_calls == len(gen.requests), strategy
        assert result.usage.prm_calls == scorer.calls, strategy


def test_beam_search_final_round_generates_to_the_end():
    result, gen, _ = solve("beam_search", n=4, beam_width=2, max_steps=2)
    assert gen.requests[-1].stop is None  # the last round is not cut at the separator
    assert all(c.finish_reason != "partial" for c in result.candidates)
    assert result.answer is not None


def test_dvts_expands_independent_subtrees_greedily():
    # N=4, M=2 -> 2 subtrees, each sampling 2 steps per round and following the better one.
    # Every subtree sees the same continuations here, so both follow 2|4|6 -> \boxed{12}.
    result, gen, scorer = solve("dvts", "last", n=4, beam_width=2)
    assert result.details["subtrees"] == 2
    assert result.best.trajectory.step_texts == ["2", "4", "6", "\\boxed{12}"]
    assert [r.n for r in gen.requests] == [2] * len(gen.requests)
    assert len(gen.requests) == 2 * 4  # 2 subtrees x (3 steps + answer)
    assert scorer.calls == 4
    assert len(result.candidates) == 2


def test_early_pruning_spends_fewer_tokens_than_best_of_n():
    bon, _, _ = solve("best_of_n", n=8)
    pruned, gen, _ = solve("early_pruning", n=8, schedule=[0.5, 0.25])
    assert pruned.usage.generated_tokens < bon.usage.generated_tokens
    # 8 first steps; keep 4, one more step each; keep 1, one more step; finish it.
    assert [r.n for r in gen.requests] == [8, 1, 1, 1, 1, 1, 1]
    assert pruned.usage.generated_tokens == 8 + 4 + 1 + 2
    assert pruned.details["survivors"] == 1
    # The survivor continues where it stopped: its prefix is the kept partial trajectory.
    assert gen.requests[-1].prefix.count("\n\n") == 3 and gen.requests[-1].stop is None


def test_early_pruning_by_tokens():
    result, gen, _ = solve("early_pruning", n=4, schedule=[0.5], chunk="tokens", chunk_size=1)
    assert all(r.sampling.max_tokens == 1 for r in gen.requests[:3])
    assert result.answer is not None


def test_beam_pools_are_per_problem():
    gen, scorer = StepTreeGenerator(depth=2), DigitScorer()
    solver = ReasoningSolver(Settings.load(strategy="beam_search"), generator=gen, scorer=scorer)

    async def both():
        return await asyncio.gather(solver.asolve("q1", n=4, beam_width=2), solver.asolve("q2", n=4, beam_width=2))

    r1, r2 = asyncio.run(both())
    assert {r.question for r in gen.requests} == {"q1", "q2"}
    for result in (r1, r2):
        assert all(c.trajectory.question == result.question for c in result.candidates)
        assert len(result.candidates) <= 4


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(strategy="beam_search", beam_width=0), "beam_width"),
        (dict(strategy="early_pruning", schedule=[0.0]), "schedule"),
        (dict(strategy="dvts", beam_widht=2), "it takes: n, token_budget, budget_counts, beam_width, max_steps"),
    ],
)
def test_bad_strategy_parameters(params, message):
    solver = ReasoningSolver(Settings.load(), generator=StepTreeGenerator(), scorer=DigitScorer())
    with pytest.raises(ConfigError, match=message):
        solver.solve("q", **params)


class RunawaySteps:
    """Never finishes an answer: each step is 10 tokens ("stepN" plus padding), cut at the
    request's token limit with finish_reason "length", as servers do."""

    def __init__(self):
        self.requests = []

    async def generate(self, request):
        from rfprm_tts.generators import Completion, GenerationResult

        self.requests.append(request)
        limit = request.sampling.max_tokens
        tokens = min(10, limit)
        result = GenerationResult(prompt_tokens=1, calls=1)
        for i in range(request.n):
            step = f"step{i + 1}" + "." * (tokens - 5)
            finish, stop = ("stop", "\n\n") if tokens == 10 else ("length", None)
            result.completions.append(Completion(text=step, finish_reason=finish, tokens=tokens, stop_reason=stop))
            result.generated_tokens += tokens
        return result

    async def aclose(self):
        pass


@pytest.mark.parametrize("strategy", ["beam_search", "dvts", "early_pruning"])
def test_step_searches_hold_the_whole_answer_token_budget(strategy):
    """generator.max_tokens bounds each answer, not each step request: every step request
    gets what the answer has left, and no answer outgrows it."""
    gen = RunawaySteps()
    settings = Settings.load(strategy=strategy, generator={"max_tokens": 35}, prm={"aggregation": "min"})
    params = {"schedule": [1.0] * 8} if strategy == "early_pruning" else {"beam_width": 2, "max_steps": 40}
    result = ReasoningSolver(settings, generator=gen, scorer=DigitScorer()).solve("q", n=4, **params)
    assert sorted({r.sampling.max_tokens for r in gen.requests}, reverse=True) == [35, 25, 15, 5]
    assert all(c.generated_tokens <= 35 for c in result.candidates)
    assert result.best.generated_tokens == 35 and result.best.finish_reason == "length"


class ScriptedTree:
    """Children by prefix (the steps so far): the k-th request for a prefix gets the k-th of
    its lists (the last one again after that), in order; a step holding \\boxed{} ends."""

    def __init__(self, children: dict[tuple[str, ...], list[list[str]]]):
        self.children, self.requests, self.asked = children, [], {}

    async def generate(self, request):
        from rfprm_tts.generators import Completion, GenerationResult

        self.requests.append(request)
        steps = tuple(s for s in request.prefix.split("\n\n") if s)
        k = self.asked[steps] = self.asked.get(steps, -1) + 1
        texts = self.children[steps][min(k, len(self.children[steps]) - 1)]
        result = GenerationResult(prompt_tokens=1, calls=1)
        for i in range(request.n):
            text = texts[i % len(texts)]
            result.completions.append(
                Completion(text=text, finish_reason="stop", tokens=1, stop_reason=None if "boxed" in text else "\n\n")
            )
            result.generated_tokens += 1
        return result

    async def aclose(self):
        pass


def run_tree(strategy: str, aggregation: str, tree: dict) -> tuple[object, set[str]]:
    gen = ScriptedTree(tree)
    settings = Settings.load(strategy=strategy, prm=dict(aggregation=aggregation))
    result = ReasoningSolver(settings, generator=gen, scorer=DigitScorer()).solve("q", n=4, beam_width=2)
    return result, {r.prefix for r in gen.requests}


def test_beam_search_drops_beams_that_can_no_longer_win():
    """N=4, M=2. Round 1: "\\boxed{8}" finishes at .8; the kept open beams are "9" (.9) and
    "5" (.5). Under min (or prod) a path only falls as it grows, so "5" can never beat .8:
    it is not grown. Under mean it could, so it is grown."""
    tree = {
        (): [["\\boxed{8}", "5", "9", "3"]],
        ("9",): [["\\boxed{7}", "8"]],
        ("5",): [["\\boxed{6}", "6"]],
        ("9", "8"): [["\\boxed{4}", "\\boxed{1}"]],
        ("5", "6"): [["\\boxed{2}", "\\boxed{3}"]],
    }
    result, prefixes = run_tree("beam_search", "min", tree)
    assert result.answer == "8"  # 9|boxed{7}: min .7; 9|8|boxed{4}: .4
    assert "9\n\n" in prefixes and "5\n\n" not in prefixes
    _, prefixes = run_tree("beam_search", "mean", tree)
    assert "5\n\n" in prefixes


def test_dvts_stops_a_subtree_that_can_no_longer_win():
    """2 subtrees, each with its own samples (both start from the question: a regression where
    equal prefixes shared one batch made every subtree the same path). Subtree 1 follows "\\boxed{8}" (.8, finished); subtree 2 follows "4" (.4):
    under min it can never beat .8, so it is not grown; under last it could."""
    tree = {(): [["\\boxed{8}", "5"], ["3", "4"]], ("4",): [["\\boxed{9}", "2"]]}
    result, prefixes = run_tree("dvts", "min", tree)
    assert result.answer == "8" and prefixes == {""}
    result, prefixes = run_tree("dvts", "last", tree)
    assert "4\n\n" in prefixes and result.answer == "9"  # grown, and under last .9 wins


SEVEN, EIGHT = "3 + 4 = 7\n\n\\boxed{7}", "3 + 4 = 8\n\n\\boxed{8}"


@pytest.mark.parametrize(
    "texts, requests, answer",
    [
        # all agree: 2 of 2 gives P(p > 1/2) = 7/8 < 0.95; 4 of 4 gives 31/32: stop after 2 rounds
        ([SEVEN], [2, 2], "7"),
        # 7, 8 alternating: never clear, so every round up to N = 16 (totals 2, 4, 8, 16)
        ([SEVEN, EIGHT], [2, 2, 4, 8], "7"),
        # 7, 7, 7, 8 repeating: 3 of 4 is 26/32; 6 of 8 is 0.910; 12 of 16 at N: stop there
        ([SEVEN, SEVEN, SEVEN, EIGHT], [2, 2, 4, 8], "7"),
    ],
)
def test_adaptive_vote_stops_when_the_vote_is_clear(texts, requests, answer):
    from helpers.fakes import ListGenerator

    class RoundGenerator(ListGenerator):  # each request continues the list where the last one ended
        async def generate(self, request):
            result = await super().generate(request)
            self.texts = self.texts[request.n % len(self.texts) :] + self.texts[: request.n % len(self.texts)]
            return result

    gen = RoundGenerator(list(texts))
    with ReasoningSolver(Settings(), generator=gen, scorer=DigitScorer()) as solver:
        result = solver.solve("Compute 3 + 4.", strategy="adaptive_vote", n=16)
    assert [r.n for r in gen.requests] == requests  # nothing sent beyond the round that decided
    assert result.answer == answer and result.details["samples"] == sum(requests)
    assert result.details["stopped_early"] == (sum(requests) < 16)
    assert result.usage.prm_calls == 0 and result.usage.generator_calls == len(requests)


def test_adaptive_vote_share_rule_and_prm_weights():
    from helpers.fakes import ListGenerator

    # share 0.7: 2 of 2 agree at once -> one round
    gen = ListGenerator([SEVEN])
    result = ReasoningSolver(Settings(), generator=gen, scorer=DigitScorer()).solve(
        "q", strategy="adaptive_vote", n=8, stop="share", share=0.7
    )
    assert [r.n for r in gen.requests] == [2] and result.answer == "7"
    # weighted: the PRM (DigitScorer: "8" scores higher) outweighs a 1-1 count; the PRM runs
    scorer = DigitScorer()
    result = ReasoningSolver(Settings(), generator=ListGenerator([SEVEN, EIGHT]), scorer=scorer).solve(
        "q", strategy="adaptive_vote", n=2, weighted=True
    )
    assert result.answer == "8" and scorer.calls == 1


class Uniforms:
    """An rng whose random() returns the given numbers in order."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def test_resampling_draws_the_particles_worked_out_by_hand():
    from rfprm_tts.strategies.particle_filtering import multinomial, systematic

    weights = [0.1, 0.2, 0.3, 0.4]  # cumulative .1 .3 .6 1.0
    # systematic, u = 0.5: positions .125 .375 .625 .875
    assert systematic(weights, 4, Uniforms(0.5)) == [1, 2, 3, 3]
    # u = 0: positions 0 .25 .5 .75 (a weight-0.1 particle can still be drawn at position 0)
    assert systematic(weights, 4, Uniforms(0.0)) == [0, 1, 2, 3]
    # unnormalised weights draw the same
    assert systematic([1, 2, 3, 4], 4, Uniforms(0.5)) == [1, 2, 3, 3]
    assert multinomial(weights, 4, Uniforms(0.05, 0.95, 0.35, 0.65)) == [0, 3, 2, 3]


def test_tempering_raises_the_temperature_until_the_weights_spread():
    import math

    from rfprm_tts.strategies.particle_filtering import (
        effective_sample_size,
        tempered_weights,
    )

    scores = [0.0, 0.0, 0.0, 1.0]
    weights, t = tempered_weights(scores, 0.05, min_ess=0.0)
    assert t == 0.05 and weights[3] > 0.99  # no tempering asked: collapsed onto one particle
    weights, t = tempered_weights(scores, 0.05, min_ess=0.5)
    # ESS >= 2 needs e^(1/t) <= 3 + 2 sqrt 3 (solve 1/ESS = (e^2x + 3)/(e^x + 3)^2 = 1/2), so
    # t >= 1/ln(6.46) = 0.536: doubling from 0.05 gives 0.8, and 0.4 was not enough.
    assert t == pytest.approx(0.8) and effective_sample_size(weights) >= 2
    assert math.log(3 + 2 * math.sqrt(3)) < 1 / 0.4
    assert sum(weights) == pytest.approx(1.0)


def test_particle_filtering_follows_the_weights():
    """N = 4 on the digit tree (last-step scores). Round 1: steps 1 2 3 4 (.1-.4); at a
    temperature of 0.001 with no tempering all weight is on "4", so every draw copies it.
    Each copy asks for one continuation (prefix "4"), grows "4|3", "4|3|5", then the answer
    \\boxed{12}; every copy finishes with it."""
    result, gen, scorer = solve("particle_filtering", "last", n=4, temperature=0.001, min_ess=0, seed=0)
    assert result.answer == "12"
    assert result.best.trajectory.step_texts == ["4", "3", "5", "\\boxed{12}"]
    assert gen.requests[0].n == 4 and all(r.n == 1 for r in gen.requests[1:])
    assert [r.prefix for r in gen.requests[1:5]] == ["4\n\n"] * 4
    assert len(result.candidates) == 4 and scorer.calls == 4
    assert result.details["rounds"] == 4 and result.details["temperatures"] == [0.001] * 3


def test_particle_filtering_with_a_seed_is_repeatable_and_keeps_weaker_particles():
    """At a high temperature weights are near uniform: systematic resampling keeps every one
    of the 4 first steps once (beam search with N / M = 2 would keep only "4" and "3")."""
    _result, gen, _ = solve("particle_filtering", "last", n=4, temperature=100.0, seed=3)
    assert sorted(r.prefix for r in gen.requests[1:5]) == ["1\n\n", "2\n\n", "3\n\n", "4\n\n"]
    again, _, _ = solve("particle_filtering", "last", n=4, temperature=0.3, seed=3, resampling="multinomial")
    third, _, _ = solve("particle_filtering", "last", n=4, temperature=0.3, seed=3, resampling="multinomial")
    assert [c.trajectory.text for c in again.candidates] == [c.trajectory.text for c in third.candidates]


def test_particle_filtering_weighted_vote_and_cache_release():
    from rfprm_tts.prm import ScorerDefaults

    class ReleaseCounter(ScorerDefaults):
        def __init__(self):
            self.inner, self.released = DigitScorer(), []
            self.prefix_cache = self

        def score_batch(self, question, trajectories):
            return self.inner.score_batch(question, trajectories)

        def release(self, question, trajectories):
            self.released += trajectories

        def hold(self, question):
            pass

        def forget(self, question):
            pass

    scorer = ReleaseCounter()
    solver = ReasoningSolver(
        Settings.load(strategy="particle_filtering", prm=dict(aggregation="last")),
        generator=StepTreeGenerator(depth=3),
        scorer=scorer,
    )
    result = solver.solve("q", n=4, temperature=0.001, min_ess=0, answer="vote")
    # round 1 drew "4" four times: "1", "2", "3" were released from the PRM's cache
    assert scorer.released[:3] == [["1"], ["2"], ["3"]]
    assert result.answer == "12" and result.details["votes"] == 4


class CostRecorder(StepTreeGenerator):
    """The digit tree, recording each request's generated tokens and its round: requests sent
    together (one round of a step search, started before any of them came back) share one."""

    def __init__(self):
        super().__init__(depth=3)
        self.costs, self.rounds, self.answered = [], [], 0

    async def generate(self, request):
        launched = self.answered
        await asyncio.sleep(0)  # let the rest of the round start first, as a real server would
        result = await super().generate(request)
        self.costs.append(result.generated_tokens)
        self.rounds.append(launched)
        self.answered += 1
        return result

    def last_round_cost(self):
        return sum(c for c, r in zip(self.costs, self.rounds) if r == self.rounds[-1])


@pytest.mark.parametrize(
    "strategy",
    [
        "best_of_n",
        "weighted_best_of_n",
        "majority_vote",
        "adaptive_vote",
        "beam_search",
        "dvts",
        "early_pruning",
        "particle_filtering",
    ],
)
@pytest.mark.parametrize("budget", [3, 8, 13, 21])
def test_no_strategy_outruns_its_budget_by_more_than_its_last_round(strategy, budget):
    """A sample-then-choose strategy's round is one request; a step search's is the requests
    of one step, sent together."""
    gen = CostRecorder()
    settings = Settings.load(strategy=strategy, generator={"max_tokens": 4}, prm={"aggregation": "last"})
    params = {"beam_width": 2} if strategy in ("beam_search", "dvts") else {}
    result = ReasoningSolver(settings, generator=gen, scorer=DigitScorer()).solve(
        "q", n=16, token_budget=budget, **params
    )
    spent = result.usage.generated_tokens
    assert spent == sum(gen.costs)
    assert spent <= budget + gen.last_round_cost(), (spent, gen.costs, gen.rounds)
    if strategy in ("best_of_n", "weighted_best_of_n", "majority_vote", "adaptive_vote"):
        assert spent <= budget + gen.costs[-1]  # one request a round
    unbounded = ReasoningSolver(settings, generator=CostRecorder(), scorer=DigitScorer()).solve("q", n=16, **params)
    assert result.usage.budget_exhausted == (spent < unbounded.usage.generated_tokens)


def test_a_budget_counting_prm_tokens_stops_sooner():
    gen = CostRecorder()
    settings = Settings.load(strategy="beam_search", generator={"max_tokens": 4}, prm={"aggregation": "last"})
    solver = ReasoningSolver(settings, generator=gen, scorer=DigitScorer())
    generated = solver.solve("q", n=8, beam_width=2, token_budget=20)
    total = solver.solve("q", n=8, beam_width=2, token_budget=20, budget_counts="total")
    assert total.usage.generated_tokens < generated.usage.generated_tokens
    assert total.usage.budget_counts == "total"
    assert (
        total.usage.generated_tokens + total.usage.prm_tokens
        <= 20 + 8 + total.usage.prm_tokens // total.usage.prm_calls
    )


def test_progress_reports_every_round_in_order():
    """Beam search on the digit tree (N = 4, M = 2): 4 rounds (3 steps, then the answers),
    each generated then scored; the best score never falls and tokens only grow."""
    events = []
    gen, scorer = StepTreeGenerator(depth=3), DigitScorer()
    solver = ReasoningSolver(
        Settings.load(strategy="beam_search", prm=dict(aggregation="min")), generator=gen, scorer=scorer
    )
    result = solver.solve("q", n=4, beam_width=2, on_progress=events.append)
    assert [(e.round, e.phase) for e in events] == [(r, p) for r in (1, 2, 3, 4) for p in ("generate", "score")]
    # the last round's 4 answers are 2 texts twice: beam search scores each text once
    assert [e.candidates for e in events] == [4] * 7 + [2] and [e.open for e in events[:6:2]] == [4, 4, 4]
    assert events[-1].finished == 4 and events[-1].best_score == result.best.score
    assert (
        events[-1].generated_tokens == result.usage.generated_tokens
        and events[-1].prm_tokens == result.usage.prm_tokens
    )
    bests = [e.best_score for e in events if e.best_score is not None]
    assert bests == sorted(bests) and [e.generated_tokens for e in events] == sorted(e.generated_tokens for e in events)
    # a vote without a PRM: one generation round, no score phase
    events.clear()
    solver.solve("Compute 3 + 4.", strategy="majority_vote", n=4, on_progress=events.append)
    assert [(e.round, e.phase, e.candidates, e.finished, e.best_score) for e in events] == [(1, "generate", 4, 4, None)]


@pytest.mark.parametrize(
    "answers, requests",
    [
        (["7", "7"], [2, 2]),  # all agree: clear after 2 + 2 (31/32 >= 0.95), nothing more is sent
        (["7", "8"], [2, 2, 4]),  # split 1-1 every time: rounds to N = 8
    ],
)
def test_adaptive_vote_sends_no_request_past_the_deciding_round_over_http(scripted_server, answers, requests):
    """Counted where the requests land: a local HTTP server answering as an OpenAI API does
    (the openai backend, over real HTTP)."""
    from helpers.servers import Reply, chat_body

    def reply(body):
        return Reply(
            200, chat_body([f"3 + 4 = {answers[i % 2]}\n\n\\boxed{{{answers[i % 2]}}}" for i in range(body["n"])])
        )

    scripted_server.default = reply
    settings = Settings(generator={"backend": "openai", "base_url": scripted_server.base_url, "model": "m"})
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 3 + 4.", strategy="adaptive_vote", n=8)
    assert [r["n"] for r in scripted_server.requests] == requests
    assert result.usage.generator_calls == len(requests) and result.details["samples"] == sum(requests)
