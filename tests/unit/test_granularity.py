"""Verification granularity (search/granularity.py: VG-Search's verify_every, and the adaptive
verify_margin) on the hand-worked step tree of helpers.fakes.StepTreeGenerator: continuation i
of a prefix with j steps is the step (i + 2j) % 9 + 1; after 3 steps the answer is
\\boxed{sum}. DigitScorer: a step scores its digit / 10 (the answer: the sum's first digit)."""

import pytest

from helpers.fakes import DigitScorer, StepTreeGenerator
from rfprm_tts import ConfigError, ReasoningSolver, Settings
from rfprm_tts.generators import Completion, GenerationRequest, GenerationResult


def solve(strategy: str, **params):
    gen, scorer = StepTreeGenerator(depth=3), DigitScorer()
    settings = Settings.load(strategy=strategy, prm=dict(aggregation="mean"))
    result = ReasoningSolver(settings, generator=gen, scorer=scorer).solve("q", **params)
    return result, gen, scorer


def test_beam_search_verifying_every_two_steps():
    # N=4, M=2, g=2, mean.
    # round 1, from the question: first steps 1 2 3 4, each grown one step (sample 0 at j=1: "3"):
    #   1|3 .20, 2|3 .25, 3|3 .30, 4|3 .35 -> keep 4|3, 3|3
    # round 2: each kept path grown one step by one sample (j=2: "5"), then branched into 2:
    #   the answers (j=3), alike: 4|3|5|12 .325, 3|3|5|11 .30 -> 4|3|5|\boxed{12}
    result, gen, scorer = solve("beam_search", n=4, beam_width=2, verify_every=2)
    assert result.best.trajectory.step_texts == ["4", "3", "5", "\\boxed{12}"] and result.answer == "12"
    assert scorer.calls == 2 and result.details["steps_per_round"] == [2, 2]  # half of g=1's four PRM calls
    # round 1: one request of 4, then 4 of 1; round 2: 2 of 1 (growing), then 2 of 2 (branching)
    assert [r.n for r in gen.requests] == [4, 1, 1, 1, 1, 1, 1, 2, 2]
    assert result.usage.prm_calls == 2 and result.usage.generator_calls == 9


def test_a_g_past_the_answer_verifies_finished_answers_once_as_best_of_n_does():
    result, _, scorer = solve("beam_search", n=4, beam_width=4, verify_every=100)
    assert scorer.calls == 1 and all(c.state == "finished" for c in result.candidates)
    assert len(result.candidates) == 4 and result.details["rounds"] == 1


@pytest.mark.parametrize(("margin", "calls", "steps"), [(1.0, 3, [2, 1, 1]), (0.0, 2, [2, 2])])
def test_the_adaptive_rule_verifies_after_one_step_when_the_kept_beams_are_close(margin, calls, steps):
    """After round 1 the kept beams score .35 and .30: within a margin of 1.0 (close: the next
    round grows one step; its kept beams, .433 and .40, are close again), not within 0.0 (the
    next round grows g = 2, to the answers)."""
    result, _, scorer = solve("beam_search", n=4, beam_width=2, verify_every=2, verify_margin=margin)
    assert scorer.calls == calls and result.details["steps_per_round"] == steps


def test_dvts_verifying_every_two_steps():
    # N=4, M=2: 2 subtrees, each sampling 2 first steps grown to 2 steps: 1|3 .2, 2|3 .25 -> 2|3;
    # then 2|3 grown one step by one sample (5), branched into 2 answers alike: 2|3|5|\boxed{10}
    result, gen, scorer = solve("dvts", n=4, beam_width=2, verify_every=2)
    assert result.best.trajectory.step_texts == ["2", "3", "5", "\\boxed{10}"]
    assert scorer.calls == 2 and result.details["rounds"] == 2
    assert [r.n for r in gen.requests] == [2, 2, 1, 1, 1, 1, 1, 1, 2, 2]


class FailingGrowth(StepTreeGenerator):
    """StepTreeGenerator whose one-sample requests to grow the path 4|3 fail."""

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        if request.n == 1 and request.prefix.rstrip() == "4\n\n3":
            self.requests.append(request)
            return GenerationResult([Completion(text="", error="upstream timed out")], calls=1)
        return await super().generate(request)


def test_a_sample_that_fails_to_grow_a_path_leaves_it_as_it_was():
    # round 2: 4|3 fails to grow and branches from where it is (5, 6: open), 3|3 grows to 3|3|5
    # and branches into its answer (\boxed{11} .30, finished); round 3 grows 4|3|6 .433 and
    # 4|3|5 .40 to their answers: \boxed{13} .35 and \boxed{12} .325 -> 4|3|6|\boxed{13}
    gen, scorer = FailingGrowth(depth=3), DigitScorer()
    settings = Settings.load(strategy="beam_search", prm=dict(aggregation="mean"))
    result = ReasoningSolver(settings, generator=gen, scorer=scorer).solve("q", n=4, beam_width=2, verify_every=2)
    assert result.best.trajectory.step_texts == ["4", "3", "6", "\\boxed{13}"]
    assert scorer.calls == 3 and result.details["steps_per_round"] == [2, 2, 2]


@pytest.mark.parametrize("granularity", [{"verify_every": 2}, {"verify_margin": 0.1}])
def test_drafted_steps_are_judged_every_step(granularity):
    with pytest.raises(ConfigError, match="cannot be combined with verify_every > 1 or verify_margin"):
        solve("beam_search", n=4, beam_width=2, draft_threshold=0.5, **granularity)
