"""The generative verifier (prm.format 'generative'): a judge model over the OpenAI API,
against a scripted local HTTP server; verdict parsing by hand."""

from __future__ import annotations

import math

import pytest

from helpers.fakes import ListGenerator
from helpers.servers import Reply, chat_body
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.prm import build_scorer
from rfprm_tts.prm.verifiers.generative import verdicts
from rfprm_tts.settings import PRMSettings

STEPS = ["3 + 4 = 7", "7 * 2 = 15", "The answer is \\boxed{15}."]


def judge(server, **kw) -> object:
    return build_scorer(
        PRMSettings(format="generative", model="judge", base_url=server.base_url, max_retries=1, backoff_s=0.01, **kw)
    )


@pytest.mark.parametrize(
    "critique, want",
    [
        ("Step 1 adds.\nStep 1: correct\nStep 2: incorrect\nStep 3: incorrect", [True, False, False]),
        ("**Step 1:** correct\nStep 2 - Incorrect", [True, False, None]),  # markdown, dashes, a step missing
        ("Step 1: incorrect\nOn reflection:\nStep 1: correct", [True, None, None]),  # the last line for a step wins
        ("\\boxed{correct} then \\boxed{incorrect}", [True, False, None]),  # ThinkPRM style
        ("Step 7: correct", [None, None, None]),  # no such step
    ],
)
def test_verdicts_are_parsed(critique, want):
    assert verdicts(critique, 3) == want


def test_scores_tokens_and_the_request(scripted_server):
    scripted_server.default = Reply(body=chat_body(["Fine.\nStep 1: correct\nStep 2: incorrect"], 40, 60))
    scorer = judge(scripted_server)
    batch = scorer.score_batch("Compute (3 + 4) * 2.", [STEPS, STEPS[:1]])
    assert batch.step_scores == [[1.0, 0.0, None], [1.0]] and batch.tokens == 2 * 100
    assert batch.errors == [None, None]
    (body,) = [b for b in scripted_server.requests if "Step 3:" in b["messages"][0]["content"]]
    prompt = body["messages"][0]["content"]
    assert body["model"] == "judge" and body["temperature"] == 0.0
    assert "Compute (3 + 4) * 2." in prompt and "Step 2: 7 * 2 = 15" in prompt


def test_verdict_probabilities_from_logprobs(scripted_server):
    body = chat_body(["Step 1: correct\nStep 2: incorrect"])
    body["choices"][0]["logprobs"] = {
        "content": [
            {"token": t, "logprob": lp, "bytes": None, "top_logprobs": []}
            for t, lp in [
                ("Step", -0.01),
                (" 1", 0.0),
                (":", 0.0),
                (" correct", math.log(0.9)),
                ("\n", 0.0),
                ("Step", 0.0),
                (" 2", 0.0),
                (":", 0.0),
                (" incorrect", math.log(0.8)),
            ]
        ]
    }
    scripted_server.default = Reply(body=body)
    scores = judge(scripted_server).score_batch("q", [STEPS[:2]]).step_scores
    assert scores == [[pytest.approx(0.9), pytest.approx(0.2)]]


def test_failures_stay_with_their_answer(scripted_server):
    """A 500 is retried; a 400 and a critique with no verdict fail that answer alone."""
    replies = {
        "A": [Reply(500, {"error": {"message": "busy"}}), Reply(body=chat_body(["Step 1: correct"]))],
        "B": [Reply(400, {"error": {"message": "bad request"}})],
        "C": [Reply(body=chat_body(["I am not sure."]))],
    }

    def answer(body):
        text = body["messages"][0]["content"]
        key = next(k for k in replies if f"Step 1: {k}\n" in text + "\n")
        return replies[key].pop(0)

    scripted_server.default = answer
    batch = judge(scripted_server).score_batch("q", [["A"], ["B"], ["C"]])
    assert batch.step_scores == [[1.0], [None], [None]]
    assert batch.errors[0] is None and "HTTP 400" in batch.errors[1] and "no verdict" in batch.errors[2]


def test_best_of_n_with_a_judge_counts_its_tokens(scripted_server):
    def answer(body):
        wrong = "= 8" in body["messages"][0]["content"]
        return Reply(body=chat_body([f"Step 1: {'incorrect' if wrong else 'correct'}\nStep 2: correct"], 20, 30))

    scripted_server.default = answer
    settings = Settings.load(prm=dict(format="generative", model="judge", base_url=scripted_server.base_url))
    answers = ["3 + 4 = 8\n\nThe answer is \\boxed{8}.", "3 + 4 = 7\n\nThe answer is \\boxed{7}."]
    with ReasoningSolver(settings, generator=ListGenerator(answers)) as solver:
        result = solver.solve("Compute 3 + 4.", n=2, prm__aggregation="min")
    assert result.answer == "7" and result.usage.prm_tokens == 2 * 50 and result.usage.prm_calls == 1
