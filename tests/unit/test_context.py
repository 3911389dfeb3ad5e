"""SearchContext (search/context.py) driven directly, on the deterministic fakes: what a
strategy sees of the generator and the PRM, and the accounting done for it."""

import asyncio

import pytest

from helpers.fakes import DigitScorer, ListGenerator, StepTreeGenerator
from rfprm_tts import ConfigError
from rfprm_tts.chat import to_messages
from rfprm_tts.errors import GenerationError
from rfprm_tts.search.context import SearchContext
from rfprm_tts.settings import Sampling

# ListGenerator: a sample costs len(text) tokens; DigitScorer: a step scores its first digit / 10
THREE = "x 3\n\n\\boxed{3}"  # 14 tokens; steps "x 3" (.3) and "\boxed{3}" (.3)
NINE = "y 8\n\n\\boxed{9}"  # 14 tokens; steps "y 8" (.8) and "\boxed{9}" (.9)


def context(generator, scorer=None, aggregation="min", **sampling) -> SearchContext:
    return SearchContext(
        to_messages("q?"), generator, scorer, separator="\n\n", aggregation=aggregation, sampling=Sampling(**sampling)
    )


def test_every_call_is_counted_and_every_sample_gets_a_seed_of_its_own():
    gen, scorer = ListGenerator([THREE, NINE]), DigitScorer()
    ctx = context(gen, scorer, seed=5)

    async def run():
        first = await ctx.sample(3)
        await ctx.sample(2)
        return await ctx.evaluate(first)

    candidates = asyncio.run(run())
    assert [(r.n, r.sampling.seed) for r in gen.requests] == [(3, 5), (2, 8)]  # seeds 5-7, then 8-9
    assert [c.score for c in candidates] == pytest.approx([0.3, 0.8, 0.3])  # min of the step scores
    assert candidates[1].step_scores == pytest.approx([0.8, 0.9]) and candidates[1].answer == "9"
    u = ctx.usage
    assert (u.generator_calls, u.generated_tokens, u.prompt_tokens) == (2, 5 * 14, 2 * len("q?"))
    assert (u.prm_calls, u.prm_tokens) == (1, 3 * len("x 3" + "\\boxed{3}"))


def test_failed_samples_are_kept_unscored_and_all_failed_is_an_error():
    scorer = DigitScorer()
    ctx = context(ListGenerator([THREE], fail={0}), scorer)
    candidates = asyncio.run(ctx.evaluate(asyncio.run(ctx.sample(2))))
    failed, good = candidates
    assert failed.state == "failed" and failed.error == "injected failure"
    assert failed.score is None and failed.step_scores == []
    assert good.ok and good.score == pytest.approx(0.3)
    assert scorer.calls == 1 and ctx.usage.prm_tokens == len("x 3" + "\\boxed{3}")  # the good one alone
    with pytest.raises(GenerationError, match="all 2 samples failed; first error: injected failure"):
        asyncio.run(context(ListGenerator([THREE], fail={0, 1}), scorer).sample(2))


def test_extend_grows_prefixes_a_step_at_a_time_within_the_answers_token_budget():
    """StepTreeGenerator: continuation i of a prefix with j steps is step (i + 2j) % 9 + 1, a
    token each. The answer may take 2 tokens: "1" then "3" use them up, so a third round
    asks nothing and hands back the prefix itself, finished by length."""
    gen = StepTreeGenerator(depth=3)
    ctx = context(gen, max_tokens=2)

    async def run():
        first = await ctx.extend([""], k=2)
        second = await ctx.extend([first[0].trajectory.text], k=1)
        third = await ctx.extend([second[0].trajectory.text], k=2)
        return first, second, third

    first, second, third = asyncio.run(run())
    assert [c.trajectory.text for c in first] == ["1\n\n", "2\n\n"]
    assert [(c.state, c.finish_reason, c.generated_tokens) for c in first] == [("open", "partial", 1)] * 2
    assert second[0].trajectory.text == "1\n\n3\n\n" and second[0].generated_tokens == 2
    assert [(r.prefix, r.stop, r.sampling.max_tokens) for r in gen.requests] == [
        ("", ["\n\n"], 2),
        ("1\n\n", ["\n\n"], 1),  # what the answer has left
    ]
    assert [(c.trajectory.text, c.finish_reason, c.state) for c in third] == [("1\n\n3\n\n", "length", "finished")] * 2
    assert [(n.parent, n.text) for n in ctx.search_tree.nodes(None)] == [
        (None, "1\n\n"),
        (None, "2\n\n"),
        (0, "3\n\n"),
        (2, ""),
        (2, ""),
    ]


def test_scores_need_a_prm_and_an_outcome_model_scores_complete_answers_only():
    no_prm = context(ListGenerator([THREE]))
    with pytest.raises(ConfigError, match="this solve has no PRM"):
        asyncio.run(no_prm.score([no_prm.trajectory(THREE)]))

    outcome = DigitScorer()
    outcome.partial_ok = False
    ctx = context(StepTreeGenerator(depth=3), outcome)
    partials = asyncio.run(ctx.extend([""], k=1))
    with pytest.raises(ConfigError, match="scores complete answers only"):
        asyncio.run(ctx.score_candidates(partials))
    assert outcome.calls == 0
    whole = context(ListGenerator([NINE]), outcome)
    complete = asyncio.run(whole.evaluate(asyncio.run(whole.sample(1))))
    assert outcome.calls == 1 and complete[0].score == pytest.approx(0.8)


class CachingScorer(DigitScorer):
    """DigitScorer as a prefix cache that records what a search holds, releases and forgets."""

    def __init__(self):
        super().__init__()
        self.prefix_cache = self
        self.held, self.released, self.forgotten = [], [], []

    def hold(self, question):
        self.held.append(question)

    def release(self, question, trajectories):
        self.released.append((question, trajectories))

    def forget(self, question):
        self.forgotten.append(question)


def test_keep_releases_what_the_search_dropped_and_close_forgets_the_question():
    scorer = CachingScorer()
    ctx = context(StepTreeGenerator(depth=3), scorer)

    async def run():
        beams = await ctx.score_candidates(await ctx.extend([""], k=3))  # "1", "2", "3"
        await ctx.keep([beams[1]])
        grown = await ctx.score_candidates(await ctx.extend([beams[1].trajectory.text], k=1))  # "2", "3"
        await ctx.keep(grown)
        await ctx.close()

    asyncio.run(run())
    assert scorer.released == [("q?", [["1"], ["3"]]), ("q?", [["2"]])]
    assert scorer.held == scorer.forgotten == ["q?"]  # held from the start, let go at the end


def test_a_repeat_of_a_kept_candidate_is_not_released():
    """Releasing a dropped repeat would free the kept one's own prefix (the same tokens)."""
    scorer = CachingScorer()
    ctx = context(StepTreeGenerator(depth=3), scorer)

    async def run():
        twice = await ctx.score_candidates(await ctx.extend(["", ""], k=2))  # "1", "2", "1", "2"
        await ctx.keep([twice[1]])

    asyncio.run(run())
    assert scorer.released == [("q?", [["1"], ["1"]])]
