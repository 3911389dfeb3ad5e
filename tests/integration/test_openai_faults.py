"""The OpenAI backend's retry and fallback policy, against a real local HTTP server."""

import asyncio

import pytest

from helpers.servers import Reply, chat_body, stream_chunks
from rfprm_tts.errors import ConfigError, GenerationError
from rfprm_tts.generators import GenerationRequest
from rfprm_tts.generators.openai import OpenAIGenerator
from rfprm_tts.settings import GeneratorSettings


def generator(url: str, **kw) -> OpenAIGenerator:
    options = dict(backend="openai", base_url=url, model="m", backoff_s=0.01, max_retries=3, timeout_s=5)
    return OpenAIGenerator(GeneratorSettings(**{**options, **kw}))


def run(gen: OpenAIGenerator, n: int = 1, times: int = 1):
    """The result of the last of `times` generate calls."""

    async def go():
        try:
            for _ in range(times):
                result = await gen.generate(GenerationRequest("q", n=n))
            return result
        finally:
            await gen.aclose()

    return asyncio.run(go())


def test_429_honours_retry_after_then_succeeds(scripted_server):
    scripted_server.script = [
        Reply(429, {"error": {"message": "slow down"}}, headers={"retry-after": "0.6"}),
        Reply(200, chat_body(["ok"], completion_tokens=3, prompt_tokens=4)),
    ]
    result = run(generator(scripted_server.base_url))
    assert len(scripted_server.requests) == 2
    gap = scripted_server.request_times[1] - scripted_server.request_times[0]
    assert gap >= 0.55  # our own backoff base is 0.01 s: only Retry-After explains the wait
    assert [c.text for c in result.completions] == ["ok"]
    assert (result.prompt_tokens, result.generated_tokens, result.calls) == (4, 3, 1)


def test_500_then_success(scripted_server):
    scripted_server.script = [Reply(500, {"error": {"message": "boom"}}), Reply(200, chat_body(["fine"]))]
    result = run(generator(scripted_server.base_url))
    assert len(scripted_server.requests) == 2
    assert result.completions[0].text == "fine"


def test_timeout_is_retried_then_reported(scripted_server):
    scripted_server.default = Reply(200, chat_body(["late"]), delay_s=1.5)
    result = run(generator(scripted_server.base_url, timeout_s=0.3, max_retries=2))
    assert len(scripted_server.requests) == 3
    assert "timed out after 3 attempts" in result.completions[0].error


def test_malformed_body_is_retried_then_reported(scripted_server):
    scripted_server.default = Reply(200, "{not json")
    result = run(generator(scripted_server.base_url, max_retries=1))
    assert len(scripted_server.requests) == 2
    assert "not valid JSON" in result.completions[0].error


def test_body_without_choices_is_malformed(scripted_server):
    scripted_server.script = [Reply(200, {"id": "x"}), Reply(200, chat_body(["ok"]))]
    result = run(generator(scripted_server.base_url))
    assert len(scripted_server.requests) == 2
    assert result.completions[0].text == "ok"


def test_the_request_is_the_apis_json_with_the_key_as_a_bearer_token(scripted_server):
    """The body is posted as the API names its fields (n, stop, seed, max_completion_tokens,
    extra_body merged in) and the API key goes as a bearer token, not in the body."""
    scripted_server.default = Reply(200, chat_body(["ok", "ok"]))
    gen = generator(
        scripted_server.base_url,
        api_key="sk-test-1",
        extra_body={"top_k": 5},
        stop=["\n\n"],
        seed=3,
        max_tokens=40,
        temperature=0.5,
    )
    run(gen, n=2)
    body, headers = scripted_server.requests[0], scripted_server.headers[0]
    assert headers["authorization"] == "Bearer sk-test-1"
    assert body["messages"][-1] == {"role": "user", "content": "q"}
    assert (body["model"], body["n"], body["stop"], body["seed"], body["top_k"]) == ("m", 2, ["\n\n"], 3, 5)
    assert (body["max_completion_tokens"], body["temperature"]) == (40, 0.5)
    assert "sk-test-1" not in str(body)


@pytest.mark.parametrize(
    "choice",
    [
        {"message": {"content": 7}},
        {"message": {"content": "x"}, "logprobs": {"content": [{"token": "x", "logprob": "low"}]}},
        {"message": {"content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}},
        "not an object",
        {"message": {"content": 7, "reasoning_content": "r"}},
        {"message": {"content": "x"}, "logprobs": {"content": [{"logprob": -0.1}]}},
        {"message": {"content": "x"}, "logprobs": {"tokens": [5], "token_logprobs": [-0.1]}},
        {"message": {"content": "x"}, "logprobs": {"tokens": ["x"], "token_logprobs": [-0.1], "top_logprobs": 3}},
        {"message": {"content": None, "tool_calls": {"id": "c", "function": {"name": "f", "arguments": "{}"}}}},
    ],
    ids=[
        "text a number",
        "logprob a string",
        "tool call without id",
        "choice a string",
        "text a number beside reasoning",
        "logprob entry without its token",
        "completions token a number",
        "completions top_logprobs a number",
        "tool_calls an object",
    ],
)
def test_a_choice_of_the_wrong_shape_is_malformed_and_retried(scripted_server, choice):
    scripted_server.script = [Reply(200, {"choices": [choice]}), Reply(200, chat_body(["ok"]))]
    result = run(generator(scripted_server.base_url, logprobs=True))
    assert len(scripted_server.requests) == 2
    assert result.completions[0].text == "ok"


def test_a_json_body_sent_as_another_content_type_is_read_as_json(scripted_server):
    """Some servers and proxies label JSON text/plain; the SDK then hands back the text."""
    scripted_server.default = Reply(200, chat_body(["ok"]), headers={"content-type": "text/plain; charset=utf-8"})
    result = run(generator(scripted_server.base_url))
    assert [c.text for c in result.completions] == ["ok"] and result.generated_tokens == 5


def test_400_is_not_retried(scripted_server):
    scripted_server.default = Reply(400, {"error": {"message": "model 'm' does not exist"}})
    result = run(generator(scripted_server.base_url))
    assert len(scripted_server.requests) == 1
    assert "HTTP 400" in result.completions[0].error and "does not exist" in result.completions[0].error


def test_server_that_ignores_n_is_topped_up_with_single_requests(scripted_server):
    scripted_server.default = Reply(200, chat_body(["one"], completion_tokens=2))
    gen = generator(scripted_server.base_url, seed=10)
    result = run(gen, n=3)
    assert [r["n"] for r in scripted_server.requests] == [3, 1, 1]
    # the rule: each of the 3 samples is drawn with a seed no other sample used, so a
    # seed-honouring server that ignores n cannot return the first sample again
    seeds = [r["seed"] for r in scripted_server.requests]
    assert len(set(seeds)) == 3 and min(seeds) == 10
    assert len(result.completions) == 3 and result.generated_tokens == 6 and result.calls == 3


def test_server_that_rejects_n_gets_parallel_single_requests(scripted_server):
    def answer(body):
        if body["n"] > 1:
            return Reply(400, {"error": {"message": "n must be 1"}})
        return Reply(200, chat_body(["single"], completion_tokens=1))

    scripted_server.default = answer
    gen = generator(scripted_server.base_url)
    result = run(gen, n=4, times=2)
    # the server rejected n and took single requests: the next call goes single at once
    assert [r["n"] for r in scripted_server.requests] == [4, 1, 1, 1, 1, 1, 1, 1, 1]
    assert [c.text for c in result.completions] == ["single"] * 4


def test_one_failed_sample_is_recorded_not_fatal(scripted_server):
    scripted_server.script = [
        Reply(200, chat_body(["a"])),  # the n=3 request returns only one choice
        Reply(200, chat_body(["b"])),
        Reply(400, {"error": {"message": "bad"}}),
    ]
    result = run(generator(scripted_server.base_url), n=3)
    texts = sorted(c.text for c in result.completions if c.error is None)
    assert texts == ["a", "b"]
    assert sum(c.error is not None for c in result.completions) == 1


def test_unreachable_endpoint_is_a_clear_error():
    from rfprm_tts.bench.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    result = run(generator(url, max_retries=1))
    error = result.completions[0].error
    assert f"cannot reach {url}" in error and "RFPRM_GENERATOR__BASE_URL" in error


def test_missing_base_url_and_bad_n():
    with pytest.raises(ConfigError, match="needs a base URL"):
        OpenAIGenerator(GeneratorSettings(backend="openai"))
    with pytest.raises(ConfigError, match="n must be >= 1"):
        asyncio.run(generator("http://127.0.0.1:1/v1").generate(GenerationRequest("q", n=0)))


def test_solve_fails_with_the_reason_when_every_sample_fails(scripted_server, tiny_prm_dir):
    from rfprm_tts import ReasoningSolver, Settings

    scripted_server.default = Reply(401, {"error": {"message": "invalid api key"}})
    settings = Settings.load(
        generator=dict(backend="openai", base_url=scripted_server.base_url, model="m", max_retries=0),
        prm=dict(model=str(tiny_prm_dir)),
        n=2,
    )
    with (
        ReasoningSolver(settings) as solver,
        pytest.raises(GenerationError, match="all 2 samples failed.*HTTP 401.*invalid api key"),
    ):
        solver.solve("Compute 1 + 1.")


def test_a_responses_token_total_is_shared_among_its_choices(scripted_server):
    """A server reports one completion_tokens for all n choices: each choice's share is in
    proportion to its length, the shares add up to the total, and they are marked estimated."""
    scripted_server.default = Reply(200, chat_body(["a" * 9, "b" * 29, ""], completion_tokens=43))
    result = run(generator(scripted_server.base_url), n=3)
    tokens = [c.tokens for c in result.completions]
    assert sum(tokens) == 43 == result.generated_tokens
    # weights: length + 1 (the EOS) = 10 : 30 : 1 of 41; 43 x w / 41 = 10.49, 31.46, 1.05;
    # floors 10 + 31 + 1 = 42, and the one token left goes to the largest remainder (10.49)
    assert tokens == [11, 31, 1]
    assert all(c.tokens_estimated for c in result.completions)
    scripted_server.default = Reply(200, chat_body(["only"], completion_tokens=7))
    single = run(generator(scripted_server.base_url), n=1).completions[0]
    assert (single.tokens, single.tokens_estimated) == (7, False)


def test_generator_replicas_stick_per_question_and_skip_a_dead_one(scripted_server):
    """generator.replicas: each question's requests reach one server; the questions whose
    server refuses connections go to the next one, and every request is answered."""
    from helpers.servers import ScriptedServer
    from rfprm_tts.bench.servers import free_port

    other = ScriptedServer()
    try:
        for server in (scripted_server, other):
            server.default = lambda body: Reply(200, chat_body([f"answer to {body['messages'][-1]['content']}"]))
        dead = f"http://127.0.0.1:{free_port()}/v1"
        gen = generator(scripted_server.base_url, replicas=[dead, other.base_url], max_retries=0)
        questions = [f"question {k}" for k in range(10)]

        async def go():
            try:
                for _ in range(2):
                    results = await asyncio.gather(*(gen.generate(GenerationRequest(q)) for q in questions))
                    assert [r.completions[0].text for r in results] == [f"answer to {q}" for q in questions]
            finally:
                await gen.aclose()

        asyncio.run(go())
        asked = [{r["messages"][-1]["content"] for r in server.requests} for server in (scripted_server, other)]
        assert asked[0] | asked[1] == set(questions) and not asked[0] & asked[1]  # one server a question
        homeless = {q for q in questions if gen.replicas.home(q) == 1}
        assert homeless and homeless <= asked[1]  # the dead server's questions went to the next one
    finally:
        other.close()


@pytest.mark.parametrize("stream", ["on", "off"], ids=["streamed", "chunks"])
def test_a_chat_server_that_cannot_continue_an_answer_names_the_way_out(scripted_server, tiny_prm_dir, stream):
    """Early exit continues partial answers; a hosted chat API refuses vLLM's
    continue_final_message with a 400. The error says so and names generator.api."""
    from rfprm_tts import ReasoningSolver, Settings

    def reply(body: dict) -> Reply:
        if body.get("continue_final_message"):
            return Reply(400, {"error": {"message": "Unrecognized request argument supplied: continue_final_message"}})
        if body.get("stream"):  # the thinking streams (generator.stream_thinking)
            return Reply(chunks=stream_chunks("<think>\nsome thinking"))
        return Reply(200, chat_body(["<think>\nsome thinking"]))

    scripted_server.default = reply
    settings = Settings.load(
        generator=dict(
            backend="openai", base_url=scripted_server.base_url, model="m", max_retries=0, stream_thinking=stream
        ),
        prm=dict(model=str(tiny_prm_dir)),
        strategy="majority_vote",
        n=2,
    )
    with (
        ReasoningSolver(settings) as solver,
        pytest.raises(GenerationError, match="refused to continue a partial answer .*generator.api = 'completions'"),
    ):
        solver.solve("Compute 1 + 1.", early_exit="probe")
    continued = [r for r in scripted_server.requests if r.get("continue_final_message")]
    # the server said stop without a close: the thinking is taken as closed, and its answer asked for
    assert continued[0]["messages"][-1] == {"role": "assistant", "content": "<think>\nsome thinking</think>"}
