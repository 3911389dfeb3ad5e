"""GenSelect (strategies/genselect.py) on a scripted generator: sample i of the question (over
all requests) is answers[i]; a selection prompt gets the replies `select` writes for it."""

import asyncio
import re

from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.generators import Completion, GenerationRequest, GenerationResult


class SelectingGenerator:
    def __init__(self, answers, select):
        self.answers, self.select, self.requests, self.prompts = answers, select, [], []
        self.served = 0  # samples given so far: a solve may ask for its N in several requests

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        self.requests.append(request)
        await asyncio.sleep(0)  # a real model answers later: the requests of one round are all out first
        prompt = request.messages[-1]["content"]
        if "candidate solutions" not in prompt:
            texts = [f"Working.\n\n\\boxed{{{a}}}" for a in self.answers[self.served : self.served + request.n]]
            self.served += len(texts)
        else:
            self.prompts.append(prompt)
            texts = [self.select(prompt, i) for i in range(request.n)]
        limit = request.sampling.max_tokens  # one token a character
        completions = [Completion(t[:limit], "stop" if len(t) <= limit else "length", len(t[:limit])) for t in texts]
        texts = [c.text for c in completions]
        return GenerationResult(completions, prompt_tokens=len(prompt), generated_tokens=sum(map(len, texts)), calls=1)

    async def aclose(self) -> None:
        pass


def shown_answers(prompt):
    return [int(a) for a in re.findall(r"Final answer: (\d+)", prompt)]


def solve(answers, select, **params):
    gen = SelectingGenerator(answers, select)
    result = ReasoningSolver(Settings.load(strategy="genselect"), generator=gen).solve("q", n=len(answers), **params)
    return result, gen


def test_the_selector_reads_one_solution_per_answer_most_common_first_and_its_pick_wins():
    # answers 4 (x3), 5 (x2), 6: one prompt shows 4, 5, 6 as solutions 0, 1, 2; it picks 2
    result, gen = solve([4, 5, 4, 6, 5, 4], lambda prompt, i: "Solution 2 is right.\nBest: 2")
    assert [shown_answers(p) for p in gen.prompts] == [[4, 5, 6]]
    assert "Solution 0:\nWorking.\n\n\\boxed{4}" in gen.prompts[0]
    assert result.answer == "6" and result.best.answer == "6"
    assert result.details["selector_calls"] == 1 and result.details["rounds"] == 1
    assert result.usage.generator_calls == 2 and gen.requests[1].sampling.temperature == 0.0


def test_a_tournament_when_the_answers_do_not_fit_one_prompt():
    # five answers, two a prompt; the selector picks the larger: (1 2) (3 4) 5 -> (2 4) 5 -> (4 5)
    def larger(prompt, i):
        shown = shown_answers(prompt)
        return f"Best: {shown.index(max(shown))}"

    result, gen = solve([1, 2, 3, 4, 5], larger, group_size=2)
    assert [shown_answers(p) for p in gen.prompts] == [[1, 2], [3, 4], [2, 4], [4, 5]]
    assert result.answer == "5" and result.details["rounds"] == 3 and result.details["selector_calls"] == 4


def test_an_unreadable_pick_falls_back_to_the_most_common_answer():
    # no pick; a solution that was not shown; a restated answer is not a pick
    for reply in ("The second one, I think.", "Best: 7", "So the answer is \\boxed{0}."):
        result, _ = solve([5, 4, 4], lambda prompt, i, reply=reply: reply)
        assert result.answer == "4" and result.details["unreadable_picks"] == 1


def test_several_selections_are_sampled_and_the_most_common_pick_wins():
    picks = ["Best: 1", "Best: 0", "best solution #1"]
    result, gen = solve([4, 4, 5], lambda prompt, i: picks[i], selections=3)
    assert result.answer == "5" and gen.requests[-1].n == 3 and gen.requests[-1].sampling.temperature == 1.0


def test_one_distinct_answer_needs_no_selector():
    result, gen = solve([7, 7, 7], lambda prompt, i: "Best: 0")
    assert result.answer == "7" and gen.prompts == [] and result.details["selector_calls"] == 0


def test_a_token_budget_spent_on_the_samples_leaves_the_pick_to_the_most_common_answer():
    # three samples of 19 tokens (one per character): 57, the whole budget
    result, gen = solve([5, 4, 4], lambda prompt, i: "Best: 0", token_budget=57)
    assert result.usage.generated_tokens == 57 and gen.prompts == [] and result.answer == "4"


def test_a_selector_of_its_own_picks_and_is_counted_apart_from_the_generator():
    # the generator only samples; the selector model reads the prompt, at its own settings
    gen = SelectingGenerator([4, 5, 4], lambda prompt, i: "Best: 0")
    selector = SelectingGenerator([], lambda prompt, i: "Comparing.\nBest: 1")
    settings = Settings.load(
        strategy="genselect", selector={"max_tokens": 77, "temperature": 0.3, "system_prompt": "You judge."}
    )
    result = ReasoningSolver(settings, generator=gen, selector=selector).solve("q", n=3)
    assert result.answer == "5" and gen.prompts == [] and [shown_answers(p) for p in selector.prompts] == [[4, 5]]
    request = selector.requests[0]
    assert request.messages[0] == {"role": "system", "content": "You judge."}
    assert request.sampling.max_tokens == 77 and request.sampling.temperature == 0.0  # one greedy pick
    reply = len("Comparing.\nBest: 1")
    assert (result.usage.selector_calls, result.usage.selector_generated_tokens) == (1, reply)
    assert result.usage.selector_prompt_tokens == len(selector.prompts[0])
    assert (result.usage.generator_calls, result.usage.generated_tokens) == (1, 3 * len("Working.\n\n\\boxed{4}"))


def test_a_token_budget_counts_the_selectors_tokens():
    # 4 samples of 19 tokens spend 76 of 96; round 1's two picks, sent at once, share the 20 left
    # (10 each; they write 9), leaving 2 tokens for the final, too few to write "Best: 1": the
    # final falls back to its first contender (4)
    gen = SelectingGenerator([5, 4, 6, 7], lambda prompt, i: "")
    selector = SelectingGenerator([], lambda prompt, i: "Best: 1\n.")
    settings = Settings.load(strategy="genselect", generator={"max_tokens": 20}, selector={"max_tokens": 50})
    result = ReasoningSolver(settings, generator=gen, selector=selector).solve("q", n=4, group_size=2, token_budget=96)
    assert [shown_answers(p) for p in selector.prompts] == [[5, 4], [6, 7], [4, 7]]
    assert [r.sampling.max_tokens for r in selector.requests] == [10, 10, 2]
    assert result.usage.selector_generated_tokens == 20 and result.usage.generated_tokens == 76
    assert result.answer == "4" and result.details["unreadable_picks"] == 1
