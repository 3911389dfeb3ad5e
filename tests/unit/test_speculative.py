"""Speculative steps (strategies/speculative.py) on hand-worked step lists: which model writes
each step at a given threshold, what is counted where, and a draft that fails.

DigitScorer scores a step (its first digit) / 10, so each step below says its own score."""

import math

import pytest

from helpers.fakes import DigitScorer
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.errors import ConfigError
from rfprm_tts.generators import Completion, GenerationRequest, GenerationResult

SEP = "\n\n"
DRAFT = ["8 apples", "3 pears", "9 plums", "\\boxed{8}"]
TARGET = ["6 figs", "7 kiwis", "5 limes", "The answer, 5: \\boxed{5}"]


class StepList:
    """Step j of every answer is steps[j] (the last one is the answer); a step costs its length
    in tokens. It stops at the separator as vLLM does (saying so), and fails the steps in `fail`."""

    def __init__(self, steps: list[str], fail: frozenset[int] = frozenset()):
        self.steps, self.fail, self.requests = steps, fail, []

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        j = len([s for s in request.prefix.split(SEP) if s])
        result = GenerationResult(prompt_tokens=10, calls=1)
        for _ in range(request.n):
            if j in self.fail:
                result.completions.append(Completion(text="", error="draft server timed out"))
                continue
            last = j == len(self.steps) - 1
            text = self.steps[j]
            result.completions.append(
                Completion(text=text, finish_reason="stop", tokens=len(text), stop_reason=None if last else SEP)
            )
            result.generated_tokens += len(text)
        return result

    async def aclose(self) -> None:
        pass


def solve(threshold: float, draft: StepList, target: StepList, **params):
    solver = ReasoningSolver(Settings(), generator=target, scorer=DigitScorer(), draft=draft)
    return solver.solve("q", strategy="speculative_steps", threshold=threshold, **{"n": 1, **params})


def test_the_draft_writes_the_steps_the_prm_accepts_and_the_target_the_rest():
    # threshold .5: 8 (draft, .8), 3 rejected -> the target's 7 (.7), 9 (draft), the draft's answer (.8)
    draft, target = StepList(DRAFT), StepList(TARGET)
    result = solve(0.5, draft, target)
    assert result.best.trajectory.text == SEP.join(["8 apples", "7 kiwis", "9 plums", "\\boxed{8}"])
    assert result.answer == "8" and result.best.step_models == ["draft", "target", "draft", "draft"]
    assert result.details == {
        "draft_steps": 3,
        "target_steps": 1,
        "accepted": 3,
        "draft_failures": 0,
        "acceptance": 0.75,
    }
    usage = result.usage
    assert (usage.draft_calls, usage.generator_calls) == (4, 1)
    assert usage.draft_generated_tokens == sum(map(len, DRAFT)) and usage.generated_tokens == len("7 kiwis")


def test_a_strict_threshold_hands_every_step_to_the_target():
    # threshold .95: every draft is rejected, so the target writes every step (RSD); with
    # compare_drafts the PRM takes a rejected draft that outscores the target's step (8 against
    # 6, 9 against 5, the answers 8 against 5) and the target keeps 7 against 3
    strict = solve(0.95, StepList(DRAFT), StepList(TARGET))
    assert strict.best.step_models == ["target"] * 4 and strict.answer == "5"
    assert strict.details["accepted"] == 0 and strict.usage.generator_calls == 4
    compared = solve(0.95, StepList(DRAFT), StepList(TARGET), compare_drafts=True)
    assert compared.best.step_models == ["draft", "target", "draft", "draft"] and compared.details["accepted"] == 0
    loose = solve(0.0, StepList(DRAFT), StepList(TARGET))  # everything the draft writes is taken
    assert loose.best.step_models == ["draft"] * 4 and loose.usage.generator_calls == 0


def test_n_drafts_per_step_and_the_prm_takes_the_best():
    draft = StepList(DRAFT)
    result = solve(0.5, draft, StepList(TARGET), n=3)
    assert [r.n for r in draft.requests] == [3, 3, 3, 3] and result.usage.draft_generated_tokens == 3 * sum(
        map(len, DRAFT)
    )


def test_a_failed_draft_step_goes_to_the_target_and_the_solve_goes_on():
    result = solve(0.5, StepList(DRAFT, fail=frozenset({2})), StepList(TARGET))
    assert result.best.step_models == ["draft", "target", "target", "draft"]
    assert result.best.trajectory.step_texts[2] == "5 limes" and result.details["draft_failures"] == 1


def test_without_a_draft_model_the_strategy_says_how_to_give_one():
    solver = ReasoningSolver(Settings(), generator=StepList(TARGET), scorer=DigitScorer())
    with pytest.raises(ConfigError, match="draft.model"):
        solver.solve("q", strategy="speculative_steps")


class RatingTarget(StepList):
    """The target: writes TARGET's steps, and rates a step (asked with search.judge's prompt) by
    its first digit d, all its probability on the digit d: a rating of d / 9."""

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        asked = request.messages[-1]["content"]
        if "Rate the last step" not in asked:
            return await super().generate(request)
        self.requests.append(request)
        last = asked.split("A partial solution:\n\n", 1)[1].split("\n\nRate the last step", 1)[0].split(SEP)[-1]
        digit = next(ch for ch in last if ch.isdigit())
        entry = {"token": digit, "logprob": 0.0, "bytes": list(digit.encode())}
        completion = Completion(
            text=digit, finish_reason="length", tokens=1, token_logprobs=[{**entry, "top_logprobs": [entry]}]
        )
        return GenerationResult([completion], prompt_tokens=20, generated_tokens=1, calls=1)


def test_specreason_the_target_rates_the_drafts_and_no_prm_is_asked():
    # ratings d / 9 against .5: 8 (.89) taken, 3 (.33) rejected -> the target's 7, 9 taken, 8 taken
    draft, target = StepList(DRAFT), RatingTarget(TARGET)
    solver = ReasoningSolver(Settings(), generator=target, scorer=DigitScorer(), draft=draft)
    result = solver.solve("q", strategy="specreason", n=1, threshold=0.5)
    assert result.best.step_models == ["draft", "target", "draft", "draft"] and result.answer == "8"
    assert result.usage.prm_calls == 0 and solver.scorer.calls == 0
    assert result.usage.generator_calls == 4 + 1  # four ratings (one a round) and one step
    ratings = [r for r in target.requests if r.sampling.max_tokens == 1]
    assert len(ratings) == 4 and all(r.sampling.top_logprobs == 5 and r.sampling.temperature == 0 for r in ratings)


def test_a_rating_is_the_expected_digit_over_nine():
    from rfprm_tts.search.judge import rating

    entry = lambda t, p: {"token": t, "logprob": math.log(p), "bytes": []}  # noqa: E731
    first = {**entry("7", 0.5), "top_logprobs": [entry("7", 0.5), entry(" 2", 0.3), entry("x", 0.2)]}
    assert rating(Completion(text="7", token_logprobs=[first])) == pytest.approx((7 * 0.5 + 2 * 0.3) / 0.8 / 9)
    assert rating(Completion(text="x", token_logprobs=[{**entry("x", 1.0), "top_logprobs": [entry("x", 1.0)]}])) is None


@pytest.mark.parametrize(
    ("strategy", "params"),
    [("beam_search", {"n": 2, "beam_width": 2}), ("particle_filtering", {"n": 2, "seed": 0})],
)
def test_step_searches_draft_their_steps(strategy, params):
    """Beam search and particle filtering with draft_threshold: each round's steps from the draft,
    those under the threshold written again by the target (the same path as speculative_steps:
    3 scores .3 and is rewritten as the target's 7)."""
    draft, target = StepList(DRAFT), StepList(TARGET)
    solver = ReasoningSolver(Settings(), generator=target, scorer=DigitScorer(), draft=draft)
    result = solver.solve("q", strategy=strategy, draft_threshold=0.5, **params)
    assert result.best.trajectory.text == SEP.join(["8 apples", "7 kiwis", "9 plums", "\\boxed{8}"])
    assert result.best.step_models == ["draft", "target", "draft", "draft"]
    assert result.details["draft_rewritten"] >= 1 and result.details["draft_accepted"] >= 3
    assert {r.prefix for r in target.requests} == {"8 apples" + SEP}  # the target wrote the one rejected step
    plain = ReasoningSolver(Settings(), generator=StepList(TARGET), scorer=DigitScorer()).solve(
        "q", strategy=strategy, **params
    )
    assert plain.best.step_models is None and "draft_accepted" not in plain.details  # no draft: as before


class OneDraftFails(StepList):
    """StepList whose second sample of step 1 fails (its call returns; that step has an error)."""

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = await super().generate(request)
        if len([s for s in request.prefix.split(SEP) if s]) == 1 and request.n > 1:
            result.completions[1] = Completion(text="", error="draft server timed out")
        return result


def test_a_draft_step_that_fails_alone_is_counted_as_failed_not_rewritten():
    """Beam search N=2, M=2, drafted: step 1's two drafts are "3 pears" (.3, rejected) and a
    failure; the target writes both again ("7 kiwis", once after repeats are dropped). The
    tally: one rewritten (the PRM's call), one failed (the draft's), not two rewritten."""
    draft, target = OneDraftFails(DRAFT), StepList(TARGET)
    solver = ReasoningSolver(Settings(), generator=target, scorer=DigitScorer(), draft=draft)
    result = solver.solve("q", strategy="beam_search", n=2, beam_width=2, draft_threshold=0.5)
    assert result.best.step_models == ["draft", "target", "draft", "draft"]
    assert (result.details["draft_failures"], result.details["draft_rewritten"]) == (1, 1)
    assert [r.n for r in target.requests] == [1, 1]  # one step each for the rejected and the failed draft


def test_a_step_the_target_rewrites_as_the_draft_wrote_it_is_the_targets():
    """The draft's "3 pears" is rejected and the target writes "3 pears" too: the step is the
    target's, and the next step grows from the target's answer (it grew from the draft's first
    copy of that text, so the whole answer read as the draft's)."""
    target = StepList(["6 figs", "3 pears", "5 limes", "The answer, 5: \\boxed{5}"])
    result = solve(0.5, StepList(DRAFT), target)
    assert result.best.step_models == ["draft", "target", "draft", "draft"]
    assert (result.details["draft_steps"], result.details["target_steps"]) == (3, 1)


def test_the_draft_samples_at_its_own_temperature():
    """draft.temperature is the draft's (it was the generator's for every request); the answer's
    token limit and the solve's stop strings stay the solve's."""
    draft, target = StepList(DRAFT), StepList(TARGET)
    generator = {"temperature": 0.0, "max_tokens": 300, "stop": ["STOP"]}
    settings = Settings(generator=generator, draft={"temperature": 0.8, "max_tokens": 9})
    ReasoningSolver(settings, generator=target, scorer=DigitScorer(), draft=draft).solve(
        "q", strategy="speculative_steps", n=1, threshold=0.5
    )
    assert {r.sampling.temperature for r in draft.requests} == {0.8}
    assert {r.sampling.temperature for r in target.requests} == {0.0}
    assert draft.requests[0].sampling.max_tokens == 300
    assert all(list(r.sampling.stop) == ["STOP"] for r in draft.requests)


def test_n_left_unset_drafts_one_step_at_a_time_and_a_given_n_is_kept():
    """n is the drafts of each step here: left unset, the strategy's own default (1, RSD's)
    applies, not the sampling strategies' 8; an override of another setting keeps it unset."""
    draft = StepList(DRAFT)
    settings = Settings(strategy="speculative_steps")
    solver = ReasoningSolver(settings, generator=StepList(TARGET), scorer=DigitScorer(), draft=draft)
    assert solver.solve("q", threshold=0.5).strategy_params["n"] == 1 and {r.n for r in draft.requests} == {1}
    assert solver.solve("q", threshold=0.5, n=3).strategy_params["n"] == 3
    assert solver.solve("q", strategy="best_of_n").strategy_params["n"] == 8


def test_the_token_budget_counts_the_drafts_tokens_and_max_steps_with_it_spent_is_no_crash():
    # threshold 0: the draft writes every step; a budget of 12 tokens is spent by "8 apples" (8)
    # and "3 pears" (7): the search stops there, open, and says the budget bound
    result = solve(0.0, StepList(DRAFT), StepList(TARGET), token_budget=12)
    assert result.usage.draft_generated_tokens == 15 and result.usage.budget_exhausted
    assert result.best.step_models == ["draft", "draft"] and result.answer is None
    # max_steps reached with the budget spent: the target is not asked for the rest
    rest = solve(0.95, StepList(DRAFT), StepList(TARGET), max_steps=1, token_budget=6)
    assert rest.usage.budget_exhausted and rest.answer is None and rest.usage.generator_calls == 0


def test_a_proxy_shares_one_draft_and_selector_across_routes_and_passed_through_names():
    import asyncio

    from rfprm_tts.generators.openai import OpenAIGenerator
    from rfprm_tts.serve.service import ProxyService

    config = Settings(
        generator={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "big"},
        draft={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "small"},
        selector={"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "judge"},
        prm={"format": "confidence"},  # no model to load
        serve={
            "routes": {
                "spec": {"strategy": "speculative_steps"},
                "pick": {"selector": {"model": "other-judge"}},  # a model of its own
                "long": {"selector": {"max_tokens": 2048}},  # sampling only: the server's selector
            },
            "passthrough_models": True,
        },
    )
    proxy = ProxyService(config)
    asyncio.run(proxy.start())
    names = ("rfprm", "spec", "any", "long", "pick")
    solvers = [proxy.solver_for(name, proxy.routes.settings(name)) for name in names]
    assert len({id(s.draft) for s in solvers}) == 1 and isinstance(proxy.solver.draft, OpenAIGenerator)
    selectors = [s.selector for s in solvers]
    assert len({id(s) for s in selectors[:4]}) == 1 and selectors[4] is not selectors[0]
    assert isinstance(selectors[4], OpenAIGenerator) and selectors[4].settings.model == "other-judge"
    asyncio.run(proxy.aclose())


@pytest.mark.parametrize(("role", "strategy"), [("draft", "speculative_steps"), ("selector", "genselect")])
def test_a_side_model_that_cannot_be_built_names_its_own_settings(role, strategy):
    """A backend's messages name generator.* settings; for the draft they name draft.*, for the
    selector selector.*: what the user has to set."""
    settings = Settings(**{role: {"backend": "openai", "model": "small"}})
    solver = ReasoningSolver(settings, generator=StepList(TARGET), scorer=DigitScorer())
    with pytest.raises(ConfigError) as unbuilt:
        solver.solve("q", strategy=strategy)
    message = str(unbuilt.value)
    assert f"{role}.base_url" in message and f"RFPRM_{role.upper()}__BASE_URL" in message
    assert "generator" not in message


@pytest.mark.parametrize(("role", "strategy"), [("draft", "speculative_steps"), ("selector", "genselect")])
def test_a_side_models_keys_without_its_model_are_refused_not_loaded_as_the_default_model(role, strategy):
    """`--selector-temperature 0.5` alone (as the CLI passes it: an override) would otherwise
    switch the section on with the default model and load that as the selector."""
    settings = Settings.load().with_overrides(**{f"{role}__temperature": 0.5})
    solver = ReasoningSolver(settings, generator=StepList(TARGET), scorer=DigitScorer())
    with pytest.raises(ConfigError, match=f"{role}.model is not: name the {role} model"):
        solver.solve("q", strategy=strategy)
    handed = ReasoningSolver(settings, generator=StepList(TARGET), scorer=DigitScorer(), **{role: StepList(TARGET)})
    assert handed.solve("q", strategy=strategy).candidates  # a model handed in needs no name: it solves
