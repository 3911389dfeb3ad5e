"""RL rewards: the core worked out by hand on the digit scorer, each adapter called exactly as
its trainer calls it (TRL 1.16, verl 0.9.1, OpenRLHF 0.11.2), the endpoints over real HTTP."""

import math
import time

import httpx
import pytest

from helpers.fakes import DigitScorer
from rfprm_tts import Settings
from rfprm_tts.prm import ScoredBatch, ScorerDefaults
from rfprm_tts.rewards import RewardModel
from rfprm_tts.rewards.openrlhf import split_query
from rfprm_tts.rewards.trl import PRMReward

Q = "Compute 3 + 4."
SEVEN = "3\n\n4\n\n\\boxed{7}"  # digit scores .3 .4 .7: mean 0.4667, last .7
EIGHT = "3\n\n5\n\n\\boxed{8}"  # .3 .5 .8: mean 0.5333


def model(scorer=None, **kw):
    return RewardModel(Settings(), scorer=scorer or DigitScorer(), **kw)


def test_beta_mix_by_hand():
    m = model(aggregation="mean")
    right, wrong, unknown = m.rewards([Q, Q, Q], [SEVEN, EIGHT, SEVEN], ["7", "7", None])
    assert right.prm == pytest.approx(1.4 / 3) and right.outcome == 1.0
    assert right.reward == pytest.approx(0.75 * 1.4 / 3 + 0.25)
    assert wrong.outcome == 0.0 and wrong.reward == pytest.approx(0.75 * 1.6 / 3)
    assert unknown.outcome is None and unknown.reward == pytest.approx(1.4 / 3)  # no gold: the PRM alone
    assert model(aggregation="mean", beta=0.0).rewards([Q], [EIGHT], ["7"])[0].reward == 0.0
    # reasonflux: mean + alpha x last, over 1 + alpha so it lies in [0, 1] like the outcome
    (rf,) = model().rewards([Q], [SEVEN], ["7"])
    assert rf.prm == pytest.approx((1.4 / 3 + 0.7) / 2)
    with pytest.raises(ValueError, match="beta"):
        model(beta=1.5)


def test_a_group_is_one_scorer_call():
    scorer = DigitScorer()
    rewards = model(scorer).rewards([Q] * 8, [SEVEN, EIGHT] * 4, ["7"] * 8)
    assert scorer.calls == 1 and len(rewards) == 8
    assert sum(r.prm_tokens for r in rewards) == 8 * (1 + 1 + len("\\boxed{7}"))


class Overflowing(ScorerDefaults):
    """Scores like DigitScorer, but a response of more than 3 steps is over its context."""

    def score_batch(self, question, trajectories):
        digits = DigitScorer().score_batch(question, trajectories)
        errors = ["longer than the context" if len(steps) > 3 else None for steps in trajectories]
        scores = [[None] * len(steps) if e else s for steps, s, e in zip(trajectories, digits.step_scores, errors)]
        return ScoredBatch(scores, tokens=digits.tokens, notes=[None] * len(errors), errors=errors)


def test_overflow_falls_back_to_the_outcome_and_is_flagged():
    long = "1\n\n2\n\n4\n\n\\boxed{7}"
    fallback, no_gold, fine = model(Overflowing(), aggregation="mean").rewards(
        [Q] * 3, [long, long, SEVEN], ["7", None, "7"]
    )
    assert fallback.reward == 1.0 and fallback.prm is None and "longer than the context" in fallback.fallback
    assert no_gold.reward is None  # neither known: TRL leaves it out
    assert fine.fallback is None and fine.reward == pytest.approx(0.75 * 1.4 / 3 + 0.25)


def test_trl_reward_function_called_as_grpo_trainer_calls_it():
    logged, extra = {}, {}
    reward = PRMReward(model(aggregation="mean"))
    # standard format: prompts and completions are strings; dataset columns come as lists
    got = reward(
        prompts=[Q, Q],
        completions=[SEVEN, EIGHT],
        completion_ids=[[1], [2]],
        answer=["7", "7"],
        trainer_state=None,
        log_extra=lambda k, v: extra.update({k: v}),
        log_metric=logged.__setitem__,
    )
    assert got == pytest.approx([0.75 * 1.4 / 3 + 0.25, 0.75 * 1.6 / 3])
    assert logged["rfprm/outcome_mean"] == 0.5 and logged["rfprm/prm_mean"] == pytest.approx(1.5 / 3)
    assert logged["rfprm/prm_fallbacks"] == 0 and extra["prm_score"] == pytest.approx([1.4 / 3, 1.6 / 3])
    # conversational: message lists; the question is the last user message
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": Q}]
    got = reward(
        prompts=[prompt],
        completions=[[{"role": "assistant", "content": SEVEN}]],
        completion_ids=[[1]],
        answer=["7"],
        trainer_state=None,
    )
    assert got == pytest.approx([0.75 * 1.4 / 3 + 0.25])
    # a dataset without the gold column: PRM only
    assert reward(prompts=[Q], completions=[SEVEN], completion_ids=[[1]], trainer_state=None) == pytest.approx(
        [1.4 / 3]
    )


def test_verl_compute_score_as_its_reward_managers_call_it(monkeypatch):
    from rfprm_tts.rewards import verl

    monkeypatch.setattr(verl, "_model", model(aggregation="mean"))
    one = verl.compute_score(data_source="demo", solution_str=SEVEN, ground_truth="7", extra_info={"question": Q})
    assert one["score"] == pytest.approx(0.75 * 1.4 / 3 + 0.25) and one["outcome"] == 1.0
    batch = verl.compute_score_batch(
        data_sources=["demo"] * 2,
        solution_strs=[SEVEN, EIGHT],
        ground_truths=["7", "7"],
        extra_infos=[{"question": Q}, {"question": Q}],
    )
    assert [b["score"] for b in batch] == pytest.approx([one["score"], 0.75 * 1.6 / 3])
    with pytest.raises(ValueError, match="extra_info\\['question'\\]"):
        verl.compute_score(data_source="demo", solution_str=SEVEN, ground_truth="7", extra_info={})
    monkeypatch.setattr(verl, "_model", model(Overflowing(), aggregation="mean"))
    unknown = verl.compute_score("demo", "1\n\n2\n\n4\n\n\\boxed{7}", None, {"question": Q})
    assert unknown["score"] == 0.0 and math.isnan(unknown["prm"]) and math.isnan(unknown["outcome"])


def test_openrlhf_queries_split_into_question_and_response():
    chatml = (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nCompute 3 + 4.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert split_query(chatml + SEVEN + "<|im_end|>", chatml) == (Q, SEVEN)
    llama = "<|start_header_id|>user<|end_header_id|>\n\nCompute 3 + 4.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    assert split_query(llama + SEVEN + "<|eot_id|>", llama) == (Q, SEVEN)
    assert split_query("Q: x A: y", "Q: x A:") == ("Q: x A:", "y")  # no template: the prompt as it is


@pytest.fixture(scope="module")
def demo_server():
    from rfprm_tts.serve import serving

    with serving(Settings(serve={"port": 0, "api_keys": ["k"]})) as url:
        yield url


RIGHT = "5 * 3 = 15\n\n7 + 15 = 22\n\n22 - 4 = 18\n\nThe answer is \\boxed{18}."
WRONG = "7 + 5 = 12\n\n12 * 3 = 36\n\n36 - 4 = 32\n\nThe answer is \\boxed{32}."
QUESTION = "Compute 7 + 5 * 3 - 4."


def test_prm_score_endpoint_equals_local_scoring(demo_server):
    from rfprm_tts.offline.responses import score_responses
    from rfprm_tts.prm import build_scorer

    body = {"items": [{"question": QUESTION, "response": RIGHT}, {"question": QUESTION, "steps": WRONG.split("\n\n")}]}
    reply = httpx.post(f"{demo_server}/v1/prm/score", json=body, headers={"authorization": "Bearer k"}, timeout=60)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    scorer = build_scorer(Settings().prm)
    local = score_responses(scorer, [(QUESTION, RIGHT), (QUESTION, WRONG.split("\n\n"))], "\n\n", 1.0)
    for got, want in zip(results, local):
        assert got["step_scores"] == pytest.approx(want.step_scores, abs=1e-5)
        assert got["scores"]["reasonflux"] == pytest.approx(want.scores["reasonflux"], abs=1e-5)
    assert reply.json()["usage"]["prm_tokens"] == sum(r.prm_tokens for r in local)
    assert httpx.post(f"{demo_server}/v1/prm/score", json=body).status_code == 401
    bad = httpx.post(
        f"{demo_server}/v1/prm/score", json={"items": [{"question": "q"}]}, headers={"authorization": "Bearer k"}
    )
    assert bad.status_code == 400 and "a response or a list of steps" in bad.json()["error"]["message"]


def test_openrlhf_endpoint_and_remote_reward_model(demo_server):
    prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    body = {
        "query": [prompt + RIGHT + "<|im_end|>", prompt + WRONG + "<|im_end|>"],
        "prompts": [prompt, prompt],
        "labels": ["18", "18"],
    }
    reply = httpx.post(
        f"{demo_server}/v1/rewards/openrlhf", json=body, headers={"authorization": "Bearer k"}, timeout=60
    )
    assert reply.status_code == 200, reply.text
    got = reply.json()
    local = RewardModel(Settings()).rewards([QUESTION] * 2, [RIGHT, WRONG], ["18", "18"])
    assert got["rewards"] == pytest.approx([r.reward for r in local], abs=1e-5) and got["scores"] == got["rewards"]
    assert got["extra_logs"]["outcome"] == [1.0, 0.0]
    # verl's remote path: the same rewards through /v1/prm/score
    remote = RewardModel(Settings(), url=demo_server, api_key="k").rewards([QUESTION] * 2, [RIGHT, WRONG], ["18", "18"])
    assert [r.reward for r in remote] == pytest.approx([r.reward for r in local], abs=1e-5)


def test_a_reward_request_has_one_time_limit_for_all_its_comparisons(demo_server, monkeypatch):
    """Answers only math-verify can compare with the gold one take its 5 s limit each (a group
    of 6: 30 s and more); the request's comparisons share one limit instead (here 2 s), after
    which outcomes are decided by spelling and value, the undecided ones flagged."""
    from rfprm_tts.grading.equivalence import compare
    from rfprm_tts.rewards import core

    compare("1/2", "0.5")  # a warm math-verify worker (the proxy runs in this process)
    monkeypatch.setattr(core, "OUTCOME_BUDGET_S", 2.0)
    prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    towers = [f"7 + 15 = 22\n\nThe answer is \\boxed{{9^{{9^{{9^{{{k}}}}}}}}}." for k in range(1, 7)]
    body = {"query": [prompt + t for t in towers], "prompts": [prompt] * 6, "labels": ["9^{9^{9^{9}}}"] * 6}
    started = time.perf_counter()
    reply = httpx.post(
        f"{demo_server}/v1/rewards/openrlhf", json=body, headers={"authorization": "Bearer k"}, timeout=120
    )
    elapsed = time.perf_counter() - started
    assert reply.status_code == 200, reply.text
    logs = reply.json()["extra_logs"]
    assert logs["outcome"] == [0.0] * 6 and logs["outcome_unchecked"] == [1.0] * 6
    assert all(0 < prm <= 1 for prm in logs["prm"])  # the PRM part is still there
    assert elapsed < 15, elapsed
