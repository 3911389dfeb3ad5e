"""The proxy's service without HTTP (rfprm_tts.serve.service): parsed requests in, answer
bodies or APIErrors out, on the deterministic fakes (answers chosen and scores worked out by
hand from DigitScorer: a step scores its first digit / 10)."""

import asyncio
import json

import pytest

from helpers.fakes import DigitScorer, ListGenerator
from rfprm_tts import ReasoningSolver, Settings
from rfprm_tts.rewards.openrlhf import OpenRLHFRequest
from rfprm_tts.serve.errors import APIError
from rfprm_tts.serve.protocol import ScoreRequest, parse_chat
from rfprm_tts.serve.service import ProxyService

LOW = "2 + 1 = 3\n\nThe answer is \\boxed{3}."  # step scores .2 .3
HIGH = "9 - 1 = 8\n\n8 is it, \\boxed{8}."  # .9 .8


def service(texts: list[str], fail: frozenset[int] = frozenset(), **settings) -> ProxyService:
    config = Settings(n=2, **settings)
    solver = ReasoningSolver(config, generator=ListGenerator(texts, fail=fail), scorer=DigitScorer())
    proxy = ProxyService(config, solver)
    asyncio.run(proxy.start())
    return proxy


def chat_call(proxy: ProxyService, **body):
    request = {"messages": [{"role": "user", "content": "Compute 2 + 1."}], **body}
    return parse_chat(json.dumps(request).encode(), proxy.routes)


def test_a_chat_request_answers_the_prm_chosen_candidate_with_its_usage():
    proxy = service([LOW, HIGH])
    body = asyncio.run(proxy.chat(chat_call(proxy, rfprm={"strategy": "best_of_n", "return_candidates": True})))
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"]["content"] == HIGH
    assert body["rfprm"]["answer"] == "8" and body["rfprm"]["strategy"] == "best_of_n"
    assert [c["step_scores"] for c in body["rfprm"]["candidates"]] == [[0.9, 0.8], [0.2, 0.3]]
    assert body["usage"]["completion_tokens"] == len(LOW) + len(HIGH)
    assert proxy.metrics.generated_tokens._value.get() == len(LOW) + len(HIGH)


def test_every_sample_failing_upstream_is_a_502_that_names_no_upstream_detail():
    proxy = service([LOW, HIGH], fail=frozenset({0, 1}))
    with pytest.raises(APIError) as failed:
        asyncio.run(proxy.chat(chat_call(proxy)))
    assert failed.value.status == 502 and failed.value.code == "upstream_failed"
    assert "injected" not in failed.value.message
    assert proxy.metrics.upstream_errors._value.get() == 1


def test_messages_without_a_question_are_a_400():
    proxy = service([LOW])
    with pytest.raises(APIError) as failed:
        asyncio.run(proxy.chat(chat_call(proxy, messages=[{"role": "assistant", "content": "hi"}])))
    assert failed.value.status == 400 and failed.value.param == "messages"


def test_prm_scores_of_given_responses_and_steps():
    proxy = service([LOW])
    request = ScoreRequest.model_validate(
        {"items": [{"question": "q", "response": HIGH}, {"question": "q", "steps": ["7 x", "no digit", "3"]}]}
    )
    body = proxy.score(request)
    first, second = body["results"]
    assert first["step_scores"] == [0.9, 0.8] and first["scores"]["min"] == 0.8
    assert second["step_scores"] == [0.7, 0.05, 0.3] and second["scores"]["last"] == 0.3
    assert body["usage"]["prm_tokens"] == first["prm_tokens"] + second["prm_tokens"] > 0


def test_openrlhf_rewards_mix_prm_and_outcome_and_refuse_mismatched_lists():
    proxy = service([LOW])
    prompt = "<|im_start|>user\nCompute 9 - 1.<|im_end|>\n<|im_start|>assistant\n"
    request = OpenRLHFRequest(
        query=[prompt + HIGH + "<|im_end|>", prompt + LOW], prompts=[prompt, prompt], labels=["8", "8"]
    )
    body = proxy.openrlhf(request)
    # reasonflux, over 1 + alpha: (mean + last) / 2; the outcome 1 for the right answer only
    assert body["extra_logs"]["prm"] == pytest.approx([(0.85 + 0.8) / 2, (0.25 + 0.3) / 2])
    assert body["extra_logs"]["outcome"] == [1.0, 0.0]
    assert body["rewards"] == pytest.approx([0.75 * 0.825 + 0.25, 0.75 * 0.275])
    with pytest.raises(APIError) as failed:
        proxy.openrlhf(OpenRLHFRequest(query=["a", "b"], labels=["1"]))
    assert failed.value.status == 400 and "2 queries" in failed.value.message


def test_the_service_needs_a_solver_before_it_answers():
    proxy = ProxyService(Settings())
    with pytest.raises(RuntimeError, match="start"):
        proxy.solver  # noqa: B018


def test_reasoning_effort_and_thinking_budget_cap_the_thinking_of_sampling_strategies():
    proxy = service([LOW])
    budget = {"none": 64, "minimal": 256, "low": 1024, "medium": 4096, "high": None}  # serve.reasoning_effort
    for effort, cap in budget.items():
        call = chat_call(proxy, reasoning_effort=effort, rfprm={"strategy": "majority_vote"})
        assert call.strategy.params.max_thinking_tokens == cap, effort
    # rfprm.thinking_budget wins over the effort
    call = chat_call(proxy, reasoning_effort="low", rfprm={"strategy": "best_of_n", "thinking_budget": 300})
    assert call.strategy.params.max_thinking_tokens == 300
    # a strategy without thinking controls: an effort sent by habit is dropped, an explicit budget refused
    beam = chat_call(proxy, reasoning_effort="low", rfprm={"strategy": "beam_search", "params": {"beam_width": 2}})
    assert beam.strategy.name == "beam_search"
    with pytest.raises(APIError) as refused:
        chat_call(proxy, rfprm={"strategy": "beam_search", "thinking_budget": 300})
    assert refused.value.status == 400 and refused.value.param == "rfprm.thinking_budget"
    with pytest.raises(APIError) as unknown:
        chat_call(proxy, reasoning_effort="extreme")
    assert unknown.value.param == "reasoning_effort" and "none, minimal, low, medium, high" in unknown.value.message


def test_a_malformed_tool_choice_is_named_by_what_it_lacks():
    """tool_choice is a name or an object: an object missing its function's name is reported
    as that, not as pydantic's first union member ("should be 'none', 'auto' or 'required'")."""
    proxy = service([LOW])
    tools = [{"type": "function", "function": {"name": "f"}}]
    for tool_choice, where in (
        ({"type": "function"}, "tool_choice.function"),
        ({"type": "function", "function": {}}, "tool_choice.function.name"),
        ("bogus", "tool_choice"),
    ):
        with pytest.raises(APIError) as refused:
            chat_call(proxy, tools=tools, tool_choice=tool_choice)
        assert refused.value.param == where and f"invalid field {where}:" in refused.value.message


def test_the_tool_vote_mode_reaches_the_tool_spec():
    proxy = service([LOW])
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert chat_call(proxy, tools=tools).tools.vote == "hierarchical"
    assert chat_call(proxy, tools=tools, rfprm={"tool_vote": "tool_args"}).tools.vote == "tool_args"
    with pytest.raises(APIError) as refused:
        chat_call(proxy, tools=tools, rfprm={"tool_vote": "by_luck"})
    assert refused.value.param == "rfprm.tool_vote"
