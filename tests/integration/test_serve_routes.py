"""Model routes (rfprm_tts.serve.routes): a request's `model` picks a route with its own
upstream, strategy, N and budget; /v1/models lists them; an unknown name is a 404 unless
passthrough is on. The official openai SDK against the proxy, two scripted upstreams."""

import openai
import pytest

from helpers.proxy import ANSWER, QUESTION, running, upstream_settings
from helpers.servers import Reply, ScriptedServer, chat_body

ASK = [{"role": "user", "content": QUESTION}]


@pytest.fixture
def upstreams():
    servers = ScriptedServer(), ScriptedServer()
    for server in servers:
        server.default = Reply(200, chat_body([ANSWER] * 8))
    yield servers
    for server in servers:
        server.close()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="any", max_retries=0)


def test_each_model_name_runs_its_route(upstreams):
    main, other = upstreams
    routes = {
        "voting": {"strategy": "majority_vote", "n": 3},
        "elsewhere": {"generator": {"base_url": other.base_url, "model": "big-model"}, "n": 4},
    }
    settings = upstream_settings(main, routes=routes).with_overrides(strategy="best_of_n")
    with running(settings) as url:
        listed = [model.id for model in client(url).models.list()]
        default = client(url).chat.completions.create(model="rfprm", messages=ASK, extra_body={"rfprm": {"n": 2}})
        voting = client(url).chat.completions.create(model="voting", messages=ASK)
        elsewhere = client(url).chat.completions.create(model="elsewhere", messages=ASK)
        with pytest.raises(openai.NotFoundError) as unknown:
            client(url).chat.completions.create(model="gpt-4o", messages=ASK)
        assert client(url).models.retrieve("voting").id == "voting"
    assert listed == ["rfprm", "voting", "elsewhere"]
    assert (default.model, voting.model, elsewhere.model) == ("rfprm", "voting", "elsewhere")
    assert default.model_extra["rfprm"]["strategy"] == "best_of_n"
    assert voting.model_extra["rfprm"]["strategy"] == "majority_vote"
    # the default and voting routes asked the main upstream (for 2, then 3 samples); elsewhere
    # asked the other one, for its own model, 4 samples
    assert [(r["model"], r["n"]) for r in main.requests] == [("up", 2), ("up", 3)]
    assert [(r["model"], r["n"]) for r in other.requests] == [("big-model", 4)]
    error = unknown.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert all(f"'{name}'" in error["message"] for name in listed)


def test_passthrough_asks_the_upstream_for_any_other_name(upstreams):
    main, _ = upstreams
    settings = upstream_settings(main, passthrough_models=True)
    with running(settings) as url:
        answered = client(url).chat.completions.create(model="qwen-max", messages=ASK)
        named = client(url).chat.completions.create(model="rfprm", messages=ASK)
        listed = [model.id for model in client(url).models.list()]
        assert client(url).models.retrieve("any-name").id == "any-name"
    assert answered.model == "qwen-max" and answered.choices[0].message.content == ANSWER
    assert named.model == "rfprm" and [r["model"] for r in main.requests] == ["qwen-max", "up"]
    assert listed == ["rfprm"]


def test_a_speculative_route_asks_its_draft_upstream_first(upstreams):
    """Two upstreams: the route's draft writes the step the PRM accepts (threshold 0), the
    generator is not asked; the draft's usage comes back apart."""
    main, draft = upstreams
    routes = {
        "spec": {
            "strategy": "speculative_steps",
            "n": 1,
            "strategy_params": {"threshold": 0.0},
            "draft": {"backend": "openai", "base_url": draft.base_url, "model": "small", "max_retries": 0},
        }
    }
    settings = upstream_settings(main, routes=routes)
    with running(settings) as url:
        response = client(url).chat.completions.create(model="spec", messages=ASK)
    usage = response.model_extra["rfprm"]["usage"]
    assert response.choices[0].message.content == ANSWER and usage["draft_calls"] >= 1
    assert main.requests == [] and {r["model"] for r in draft.requests} == {"small"}
