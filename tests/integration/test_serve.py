"""`rfprm serve` over real HTTP, with the official openai SDK as the client. Upstreams: the demo
world in-process, and a scripted local HTTP server for faults (500s, timeouts, slowness)."""

import threading
import time

import httpx
import openai
import pytest

from helpers.proxy import ANSWER, KEYS, QUESTION, metric, running, upstream_settings
from helpers.servers import Reply, ScriptedServer, chat_body
from helpers.tolerances import FLOAT32
from rfprm_tts import Settings


@pytest.fixture(scope="module")
def demo_proxy():
    settings = Settings(
        n=4,
        strategy_params={"beam_width": 2},  # server-wide; only strategies that take it get it
        serve={
            "api_keys": KEYS,
            "max_n": 16,
            "max_tokens": 300,
            "max_body_bytes": 20_000,
            "max_concurrent_per_key": 2,
            "batch_window_ms": 50,
            "max_token_budget": 5000,
        },
    )
    with running(settings) as url:
        yield url


def client(url: str, key: str = KEYS[0], **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, **kw)


def test_chat_completion_with_overrides_and_candidates(demo_proxy):
    response = client(demo_proxy).chat.completions.create(
        model="rfprm",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}],
        extra_body={"rfprm": {"strategy": "best_of_n", "n": 3, "return_candidates": True}},
    )
    text = response.choices[0].message.content
    rfprm = response.model_extra["rfprm"]
    assert rfprm["strategy"] == "best_of_n" and rfprm["strategy_params"]["n"] == 3
    candidates = rfprm["candidates"]
    assert len(candidates) == 3 and candidates[0]["text"] == text  # ranked best first
    assert candidates[0]["score"] == max(c["score"] for c in candidates if c["score"] is not None)
    assert all(len(c["step_scores"]) >= 1 for c in candidates)
    assert response.usage.completion_tokens == rfprm["usage"]["generated_tokens"] > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert rfprm["usage"]["prm_tokens"] > 0


def test_reasoning_effort_from_the_sdk_caps_the_thinking(demo_proxy):
    """The SDK's own reasoning_effort argument becomes a thinking budget (serve.reasoning_effort:
    minimal is 256 tokens); the demo model does not think, so its answer is unchanged in kind."""
    response = client(demo_proxy).chat.completions.create(
        model="rfprm",
        messages=[{"role": "user", "content": QUESTION}],
        reasoning_effort="minimal",
        extra_body={"rfprm": {"strategy": "majority_vote", "n": 2}},
    )
    rfprm = response.model_extra["rfprm"]
    assert rfprm["strategy_params"]["max_thinking_tokens"] == 256
    assert response.choices[0].message.content and rfprm["usage"]["generated_tokens"] > 0


def test_server_strategy_params_reach_only_strategies_that_take_them(demo_proxy):
    beam = (
        client(demo_proxy)
        .chat.completions.create(
            model="rfprm",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"rfprm": {"strategy": "beam_search", "n": 4, "params": {"max_steps": 6}}},
        )
        .model_extra["rfprm"]
    )
    assert beam["strategy_params"]["beam_width"] == 2 and beam["strategy_params"]["max_steps"] == 6
    plain = (
        client(demo_proxy)
        .chat.completions.create(
            model="rfprm",
            messages=[{"role": "user", "content": QUESTION}],
            extra_body={"rfprm": {"n": 2}},
        )
        .model_extra["rfprm"]
    )
    assert plain["strategy"] == "best_of_n" and "beam_width" not in plain["strategy_params"]


def test_streaming_sends_the_chosen_answer(demo_proxy):
    stream = client(demo_proxy).chat.completions.create(
        model="rfprm",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"rfprm": {"n": 2, "return_candidates": True}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_extra["rfprm"]["candidates"][0]["text"] == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streaming_reports_progress_then_the_answer_it_would_have_sent(demo_proxy):
    """The role chunk first, then progress events (no choices: the SDK passes them through),
    in round order, then the answer: the same as the same request without streaming."""
    request = dict(
        model="rfprm",
        messages=[{"role": "user", "content": QUESTION}],
        seed=7,
        extra_body={"rfprm": {"strategy": "beam_search", "n": 4, "params": {"max_steps": 6}}},
    )
    plain = client(demo_proxy).chat.completions.create(**request)
    chunks = list(client(demo_proxy).chat.completions.create(stream=True, **request))
    assert chunks[0].choices[0].delta.role == "assistant"
    progress = [(i, c.model_extra["rfprm"]) for i, c in enumerate(chunks) if not c.choices and "rfprm" in c.model_extra]
    events = [p for _, p in progress]
    assert len(events) >= 4 and {p["event"] for p in events} == {"progress"}
    order = [(p["round"], p["phase"] == "score") for p in events]
    assert order == sorted(order) and events[0]["phase"] == "generate" and events[0]["candidates"] == 4
    assert all(1 <= p["round"] <= 6 for p in events)
    first_content = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    assert progress[-1][0] < first_content  # every event before the answer
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason).model_extra["rfprm"]
    assert (
        final["usage"]["generated_tokens"]
        == events[-1]["generated_tokens"]
        == plain.model_extra["rfprm"]["usage"]["generated_tokens"]
    )
    assert final["usage"]["prm_tokens"] == events[-1]["prm_tokens"]


def test_token_budget_from_the_body_or_a_header_within_the_server_limit(demo_proxy):
    def ask(headers=None, **rfprm):
        return (
            client(demo_proxy)
            .chat.completions.create(
                model="rfprm",
                messages=[{"role": "user", "content": QUESTION}],
                extra_headers=headers,
                extra_body={"rfprm": {"n": 16, "return_candidates": True, **rfprm}},
            )
            .model_extra["rfprm"]
        )

    capped = ask(token_budget=150)
    usage = capped["usage"]
    assert usage["token_budget"] == 150 and usage["budget_exhausted"] and len(capped["candidates"]) < 16
    # sized to what is left: over by at most the last request's samples, each capped at what was left
    assert usage["generated_tokens"] <= 150 + 150
    assert ask({"X-Rfprm-Token-Budget": "100"}, token_budget=150)["usage"]["token_budget"] == 100  # the smaller
    assert ask({"X-Rfprm-Token-Budget": "120"})["usage"]["token_budget"] == 120
    assert ask()["usage"]["token_budget"] == 5000  # none asked: the server's limit
    both = ask(token_budget=150, budget_counts="total", params={"budget_counts": "generated"})["usage"]
    assert both["budget_counts"] == "total"  # the rfprm object's own field wins over params
    for headers, body, code in [
        (None, {"token_budget": 6000}, "token_budget_too_large"),
        ({"X-Rfprm-Token-Budget": "lots"}, {}, "invalid_token_budget"),
        (None, {"token_budget": 0}, "invalid_field"),
    ]:
        with pytest.raises(openai.BadRequestError) as err:
            ask(headers, **body)
        assert err.value.code == code


def test_models_health_and_metrics(demo_proxy):
    assert [m.id for m in client(demo_proxy).models.list().data] == ["rfprm"]
    assert httpx.get(f"{demo_proxy}/health").json() == {"status": "ok"}
    assert metric(demo_proxy, 'rfprm_requests_total{status="200"}') >= 1
    assert metric(demo_proxy, "rfprm_prm_tokens_total") > 0


def test_auth(demo_proxy):
    with pytest.raises(openai.AuthenticationError) as err:
        client(demo_proxy, key="wrong").chat.completions.create(
            model="rfprm", messages=[{"role": "user", "content": QUESTION}]
        )
    assert err.value.body["code"] == "invalid_api_key"
    assert httpx.post(f"{demo_proxy}/v1/chat/completions", json={}).status_code == 401
    assert client(demo_proxy, key=KEYS[1]).models.list().data  # either key works


@pytest.mark.parametrize(
    "body, code",
    [
        ({"messages": [{"role": "user", "content": QUESTION}], "n": 5}, "invalid_n"),  # the search has 4
        ({"messages": [{"role": "user", "content": QUESTION}], "rfprm": {"n": 17}}, "n_too_large"),
        ({"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 301}, "max_tokens_too_large"),
        ({"messages": []}, "invalid_field"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "invalid_messages"),
        ({"messages": [{"role": "tool", "content": "hi"}, {"role": "user", "content": QUESTION}]}, "invalid_messages"),
        ({"messages": [{"role": "user", "content": QUESTION}], "temperature": -1}, "invalid_field"),
        ({"messages": [{"role": "user", "content": QUESTION}], "rfprm": {"strategy": "nope"}}, "invalid_rfprm_option"),
        ({"messages": [{"role": "user", "content": QUESTION}], "rfprm": {"colour": 1}}, "invalid_field"),
        (
            {
                "messages": [{"role": "user", "content": QUESTION}],
                "rfprm": {"strategy": "best_of_n", "params": {"beam_width": 3}},
            },
            "invalid_rfprm_option",
        ),
    ],
)
def test_invalid_requests_get_openai_style_400s(demo_proxy, body, code):
    response = httpx.post(
        f"{demo_proxy}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEYS[0]}"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]


def test_malformed_json_and_oversized_body(demo_proxy):
    headers = {"Authorization": f"Bearer {KEYS[0]}", "content-type": "application/json"}
    bad = httpx.post(f"{demo_proxy}/v1/chat/completions", content=b'{"messages": [', headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    big = {"messages": [{"role": "user", "content": "x" * 30_000}]}
    response = httpx.post(f"{demo_proxy}/v1/chat/completions", json=big, headers=headers)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


@pytest.fixture
def faulty_upstream():
    server = ScriptedServer()
    yield server
    server.close()


def test_upstream_500s_are_retried_then_mapped_to_502(faulty_upstream):
    faulty_upstream.script = [Reply(500, {"error": {"message": "boom"}}), Reply(200, chat_body([ANSWER, ANSWER]))]
    with running(upstream_settings(faulty_upstream)) as url:
        response = client(url, key="any").chat.completions.create(
            model="rfprm", messages=[{"role": "user", "content": QUESTION}]
        )
        assert response.model_extra["rfprm"]["answer"] == "18" and len(faulty_upstream.requests) == 2

        faulty_upstream.default = Reply(500, {"error": {"message": "upstream down"}})
        with pytest.raises(openai.InternalServerError) as err:
            client(url, key="any").chat.completions.create(
                model="rfprm", messages=[{"role": "user", "content": QUESTION}]
            )
        assert err.value.status_code == 502 and err.value.body["code"] == "upstream_failed"
        assert "127.0.0.1" not in err.value.body["message"]  # the upstream's address is the operator's business
        assert metric(url, "rfprm_upstream_errors_total") >= 1


def test_upstream_timeouts_are_mapped_to_504(faulty_upstream):
    faulty_upstream.default = Reply(200, chat_body([ANSWER, ANSWER]), delay_s=2.0)
    with running(upstream_settings(faulty_upstream)) as url:
        response = httpx.post(
            f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}]}, timeout=30
        )
        assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
        assert len(faulty_upstream.requests) == 3  # the first try and two retries


def test_per_key_concurrency_limit_and_client_disconnect(faulty_upstream):
    faulty_upstream.default = Reply(200, chat_body([ANSWER, ANSWER]), delay_s=3.0)
    settings = upstream_settings(faulty_upstream, api_keys=KEYS, max_concurrent_per_key=1, queue_wait_s=0.3)
    settings = settings.with_overrides(generator__timeout_s=10)
    with running(settings) as url:
        body = {"messages": [{"role": "user", "content": QUESTION}]}
        headers = {"Authorization": f"Bearer {KEYS[0]}"}
        gave_up = []

        def impatient_client():
            try:
                httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=0.8)
            except httpx.ReadTimeout:
                gave_up.append(True)

        first = threading.Thread(target=impatient_client)
        first.start()
        time.sleep(0.3)
        second = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10)
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        other_key = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEYS[1]}"})
        assert other_key.status_code == 200
        first.join()
        assert gave_up  # after 0.8 s, long before the upstream answers
        deadline = time.time() + 5
        while metric(url, "rfprm_cancelled_requests_total") < 1 and time.time() < deadline:
            time.sleep(0.1)
        assert metric(url, "rfprm_cancelled_requests_total") == 1
        assert metric(url, "rfprm_requests_in_flight") == 0  # its key's slot is free again


def test_concurrent_requests_share_prm_batches(faulty_upstream):
    """Requests whose samples come back together have their PRM work batched."""
    faulty_upstream.default = Reply(200, chat_body([ANSWER, ANSWER]))
    with running(upstream_settings(faulty_upstream, batch_window_ms=200)) as url:
        threads = [
            threading.Thread(
                target=lambda: client(url, key="any").chat.completions.create(
                    model="rfprm", messages=[{"role": "user", "content": QUESTION}]
                )
            )
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batches = metric(url, "rfprm_prm_batch_requests_count")
        assert metric(url, "rfprm_prm_batch_requests_sum") == 4  # every request's PRM work, once
        assert 1 <= batches < 4  # in fewer, shared calls
        assert metric(url, 'rfprm_requests_total{status="200"}') == 4


def test_batching_scorer_equals_direct_scoring(tiny_prm_dir):
    from rfprm_tts.prm import load_prm
    from rfprm_tts.serve.batching import BatchingScorer

    sizes = []
    batching = BatchingScorer(load_prm(str(tiny_prm_dir)), window_s=0.2, on_batch=lambda r, t: sizes.append((r, t)))
    requests = [(QUESTION, [["1 + 1 = 2"], ["2 * 3 = 6", "6 + 1 = 7"]]), ("Compute 2 + 2.", [["2 + 2 = 4"]])]
    results = {}
    threads = [
        threading.Thread(target=lambda q=q, t=t: results.__setitem__(q, batching.score_batch(q, t)))
        for q, t in requests
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sizes == [(2, 3)]  # both calls in one batch of three trajectories
    direct = load_prm(str(tiny_prm_dir), incremental=False)
    for question, trajectories in requests:
        want = direct.score(question, trajectories)
        for got, expected in zip(results[question].step_scores, want):
            assert got == pytest.approx(expected, abs=FLOAT32)
    # an input too long for the PRM is reported on that trajectory, not raised
    too_long = BatchingScorer(load_prm(str(tiny_prm_dir), max_length=20)).score_batch(QUESTION, [["1 + 1 = 2"]])
    assert "PRM" in too_long.errors[0] and too_long.step_scores == [[None]]


def test_messages_and_sampling_fields_reach_the_upstream(faulty_upstream):
    """The system message and the history go upstream as sent; the request's sampling fields
    override the server's settings; the PRM scores the last user message."""
    faulty_upstream.default = Reply(200, chat_body([ANSWER, ANSWER]))
    messages = [
        {"role": "system", "content": "Solve step by step."},
        {"role": "user", "content": "Compute 1 + 1."},
        {"role": "assistant", "content": "1 + 1 = 2\n\nThe answer is \\boxed{2}."},
        {"role": "user", "content": QUESTION},
    ]
    with running(upstream_settings(faulty_upstream)) as url:
        response = client(url, key="any").chat.completions.create(
            model="rfprm",
            messages=messages,
            temperature=0.3,
            top_p=0.9,
            seed=5,
            stop=["###"],
            max_tokens=200,
            extra_body={"rfprm": {"return_candidates": True}},
        )
    sent = faulty_upstream.requests[0]
    assert sent["messages"] == messages
    assert (sent["temperature"], sent["top_p"], sent["seed"], sent["stop"], sent["max_completion_tokens"]) == (
        0.3,
        0.9,
        5,
        ["###"],
        200,
    )
    assert response.model_extra["rfprm"]["answer"] == "18"
    assert all(len(c["step_scores"]) == 4 for c in response.model_extra["rfprm"]["candidates"])


def test_server_defaults_apply_when_the_request_gives_none(faulty_upstream):
    faulty_upstream.default = Reply(200, chat_body([ANSWER, ANSWER]))
    settings = upstream_settings(faulty_upstream).with_overrides(
        generator__temperature=0.6, generator__system_prompt="Solve step by step."
    )
    with running(settings) as url:
        client(url, key="any").chat.completions.create(model="rfprm", messages=[{"role": "user", "content": QUESTION}])
    sent = faulty_upstream.requests[0]
    assert sent["temperature"] == 0.6 and sent["messages"][0] == {"role": "system", "content": "Solve step by step."}


def test_one_failing_request_does_not_fail_its_batch_neighbours(tiny_prm_dir):
    """Errors belong to the request that caused them: a batch that fails is split."""
    from rfprm_tts.prm import ScorerDefaults, load_prm
    from rfprm_tts.serve.batching import BatchingScorer

    class FailsOnOneQuestion(ScorerDefaults):
        def __init__(self, scorer):
            self.scorer = scorer

        def score_many(self, requests):
            if any(question == "bad" for question, _ in requests):
                raise RuntimeError("this question breaks the PRM")
            return self.scorer.score_many(requests)

    sizes = []
    batching = BatchingScorer(
        FailsOnOneQuestion(load_prm(str(tiny_prm_dir))), window_s=0.2, on_batch=lambda r, t: sizes.append(r)
    )
    results = {}

    def call(question, trajectories):
        try:
            results[question] = batching.score_batch(question, trajectories)
        except RuntimeError as exc:
            results[question] = exc

    threads = [threading.Thread(target=call, args=a) for a in [("bad", [["1 + 1 = 2"]]), (QUESTION, [["5 * 3 = 15"]])]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sizes == [2]  # they shared one batch
    assert isinstance(results["bad"], RuntimeError)
    assert results[QUESTION].step_scores[0][0] is not None


def test_no_open_proxy_beyond_loopback(tmp_path):
    """`rfprm serve --host 0.0.0.0` without a key refuses to start; with --api-key it serves,
    asks for the key, and never prints it."""
    import subprocess
    import sys
    from pathlib import Path

    from rfprm_tts.bench.servers import free_port, server_process

    rfprm = str(Path(sys.executable).parent / "rfprm")
    refused = subprocess.run(
        [rfprm, "serve", "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert refused.returncode == 2 and "--api-key" in refused.stderr and "--allow-no-auth" in refused.stderr
    port = free_port()
    secret = "s3cret-key-value"
    command = [rfprm, "serve", "--host", "0.0.0.0", "--port", str(port), "--api-key", secret]
    log = tmp_path / "serve.log"
    with server_process(command, f"http://127.0.0.1:{port}/health", log, timeout_s=120, cwd=tmp_path):
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        ok = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200
    assert "Uvicorn running" in log.read_text() and secret not in log.read_text()


WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def test_logprobs_are_the_chosen_samples_tokens_as_the_model_gave_them(demo_proxy):
    """Greedy, so each sampled token is the model's most likely: it heads its own top list,
    with the same log-probability (transformers' scores, read back through the SDK)."""
    ask = {"model": "rfprm", "messages": [{"role": "user", "content": QUESTION}], "temperature": 0}
    response = client(demo_proxy).chat.completions.create(
        **ask, logprobs=True, top_logprobs=3, extra_body={"rfprm": {"strategy": "best_of_n", "n": 1}}
    )
    [answered] = response.choices
    tokens = answered.logprobs.content
    assert "".join(t.token for t in tokens) == answered.message.content
    for t in tokens:
        assert len(t.top_logprobs) == 3 and t.logprob <= 0
        assert [top.logprob for top in t.top_logprobs] == sorted((top.logprob for top in t.top_logprobs), reverse=True)
        assert t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == pytest.approx(t.logprob, abs=1e-5)
        assert bytes(t.bytes) == t.token.encode()
    plain = client(demo_proxy).chat.completions.create(**ask, extra_body={"rfprm": {"strategy": "best_of_n", "n": 1}})
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == answered.message.content
    # a search that builds answers from several requests' tokens cannot give them; nor top without logprobs
    for extra, param in (
        ({"logprobs": True, "extra_body": {"rfprm": {"strategy": "beam_search"}}}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            client(demo_proxy).chat.completions.create(**ask, **extra)
        assert refused.value.body["code"] == "invalid_logprobs" and refused.value.body["param"] == param


@pytest.mark.parametrize(
    ("field", "extra"),
    [
        ("tool_choice", {"tool_choice": "required"}),  # without tools (tools: test_serve_tools.py)
        ("functions", {"extra_body": {"functions": [WEATHER_TOOL["function"]]}}),
        ("presence_penalty", {"presence_penalty": 0.5}),
        ("logit_bias", {"logit_bias": {"1": 5}}),
        ("modalities", {"modalities": ["text", "audio"]}),
    ],
)
def test_what_the_proxy_cannot_honour_is_refused_not_dropped(demo_proxy, field, extra):
    """A JSON response format, log-probabilities, or a tool call asked for without tools,
    answered with plain text would mislead the client: a 400 naming the field, before any work."""
    with pytest.raises(openai.BadRequestError) as refused:
        client(demo_proxy).chat.completions.create(
            model="rfprm", messages=[{"role": "user", "content": QUESTION}], **extra
        )
    error = refused.value.body
    assert error["code"] == "unsupported_field" and error["param"] == field and field in error["message"]


def test_harmless_defaults_of_those_fields_are_served(demo_proxy):
    response = client(demo_proxy).chat.completions.create(
        model="rfprm",
        messages=[{"role": "user", "content": QUESTION}],
        tools=[],
        tool_choice="auto",
        response_format={"type": "text"},
        logprobs=False,
        presence_penalty=0,
        modalities=["text"],
        user="someone",
        metadata={"app": "test"},
    )
    assert response.choices[0].message.content


def test_an_unknown_model_name_is_a_404_as_openai_answers(demo_proxy):
    with pytest.raises(openai.NotFoundError) as missing:
        client(demo_proxy).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
    assert missing.value.body["code"] == "model_not_found" and "'rfprm'" in missing.value.body["message"]
    assert client(demo_proxy).models.retrieve("rfprm").id == "rfprm"
    with pytest.raises(openai.NotFoundError):
        client(demo_proxy).models.retrieve("gpt-4o")
    # a body without a model (raw HTTP clients) is the proxy's model
    answered = httpx.post(
        f"{demo_proxy}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": QUESTION}]},
        headers={"Authorization": f"Bearer {KEYS[0]}"},
        timeout=60,
    )
    assert answered.status_code == 200


def boxed(answer: str) -> str:
    return f"5 * 3 = 15\n\nThe answer is \\boxed{{{answer}}}."


def test_n_choices_are_the_distinct_answers_best_first(faulty_upstream):
    """n=3 over a majority vote of six samples answering 18, 18, 19, 20, 19, 18: the vote's
    pick (18), then 19 (two samples), then 20 (one); usage counts the whole search once."""
    faulty_upstream.default = Reply(200, chat_body([boxed(a) for a in ("18", "18", "19", "20", "19", "18")], 60))
    with running(upstream_settings(faulty_upstream).with_overrides(n=6, strategy="majority_vote")) as url:
        response = client(url, key="any").chat.completions.create(
            model="rfprm", n=3, messages=[{"role": "user", "content": QUESTION}]
        )
        streamed = client(url, key="any").chat.completions.create(
            model="rfprm", n=3, stream=True, messages=[{"role": "user", "content": QUESTION}]
        )
        texts: dict[int, str] = {}
        finished: dict[int, str] = {}
        for chunk in streamed:
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.finish_reason:
                    finished[choice.index] = choice.finish_reason
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert [c.message.content for c in response.choices] == [boxed("18"), boxed("19"), boxed("20")]
    assert all(c.finish_reason == "stop" for c in response.choices)
    assert response.usage.completion_tokens == 60  # one upstream call of n=6, counted once
    assert texts == {0: boxed("18"), 1: boxed("19"), 2: boxed("20")} and finished == dict.fromkeys(range(3), "stop")


def test_n_above_the_distinct_answers_gives_fewer_choices(faulty_upstream):
    faulty_upstream.default = Reply(200, chat_body([boxed("18")] * 4))
    with running(upstream_settings(faulty_upstream).with_overrides(n=4, strategy="majority_vote")) as url:
        response = client(url, key="any").chat.completions.create(
            model="rfprm", n=2, messages=[{"role": "user", "content": QUESTION}]
        )
    assert [c.message.content for c in response.choices] == [boxed("18")]
