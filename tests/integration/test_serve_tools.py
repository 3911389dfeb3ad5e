"""`rfprm serve` in an agent's loop: tools offered to the upstream, samples that call them voted
on (rfprm_tts.search.tool_calls), the winner's calls in OpenAI's shape, plain and streamed, and
the tool results of the next turn passed on; structured output (response_format) voted on as
canonical JSON (rfprm_tts.search.json_answers). The official openai SDK and LangChain against
the proxy, with a scripted upstream."""

import json

import httpx
import openai
import pytest

from helpers.proxy import KEYS, QUESTION, running, upstream_settings
from helpers.servers import Reply, ScriptedServer
from helpers.tools import WEATHER
from rfprm_tts import Settings

SEARCH = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "What should I wear in Paris today?"}]


def call(name: str, arguments: str, i: int) -> dict:
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": arguments}}


def upstream_body(samples: list[str | tuple[str, str]]) -> dict:
    """A chat completion whose choices answer in text (a string) or call a tool ((name, arguments))."""
    choices = []
    for i, sample in enumerate(samples):
        if isinstance(sample, str):
            message, finish = {"role": "assistant", "content": sample}, "stop"
        else:
            message, finish = {"role": "assistant", "content": None, "tool_calls": [call(*sample, i)]}, "tool_calls"
        choices.append({"index": i, "message": message, "finish_reason": finish})
    usage = {"prompt_tokens": 20, "completion_tokens": 10 * len(samples), "total_tokens": 20 + 10 * len(samples)}
    return {"id": "up", "object": "chat.completion", "created": 0, "model": "up", "choices": choices, "usage": usage}


@pytest.fixture
def upstream():
    server = ScriptedServer()
    yield server
    server.close()


def proxy(upstream: ScriptedServer, n: int):
    return running(upstream_settings(upstream).with_overrides(n=n, strategy="majority_vote"))


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="any", max_retries=0)


PARIS = '{"city": "Paris", "unit": "c"}'
VOTE = [
    ("get_weather", PARIS),
    ("get_weather", '{"unit":"c","city":"Paris"}'),  # the same call, keys in another order
    ("get_weather", '{"city": "London"}'),
    ("search", '{"q": "Paris weather"}'),
    ("get_weather", "{not json"),  # arguments the client could not run: a failed sample
]


def test_the_most_called_tool_wins_with_its_arguments_verbatim(upstream):
    # names: get_weather 3 (the bad one failed) against search 1; its arguments: Paris 2
    # against London 1; the first Paris sample's call comes back as the upstream wrote it.
    upstream.default = Reply(200, upstream_body(VOTE))
    with proxy(upstream, n=5) as url:
        response = client(url).chat.completions.create(
            model="rfprm", messages=ASK, tools=[WEATHER, SEARCH], tool_choice="auto", parallel_tool_calls=False
        )
        top = client(url).chat.completions.create(
            model="rfprm", messages=ASK, tools=[WEATHER, SEARCH], n=4, extra_body={"rfprm": {"return_candidates": True}}
        )
    [choice] = response.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [chosen] = choice.message.tool_calls
    assert (chosen.id, chosen.function.name, chosen.function.arguments) == ("call_0", "get_weather", PARIS)
    # n=4: the distinct calls, the winner first (the two Paris calls are one): three choices
    called = [(c.message.tool_calls[0].id, c.finish_reason) for c in top.choices]
    assert called[0] == ("call_0", "tool_calls") and sorted(called[1:]) == [
        ("call_2", "tool_calls"),
        ("call_3", "tool_calls"),
    ]
    listed = top.model_extra["rfprm"]["candidates"]
    assert sorted(c["tool_calls"][0]["id"] for c in listed) == [f"call_{i}" for i in range(5)]
    rfprm = response.model_extra["rfprm"]
    assert rfprm["answer"] == 'get_weather({"city":"Paris","unit":"c"})'
    sent = upstream.requests[0]
    assert sent["tools"] == [WEATHER, SEARCH] and sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False


def test_the_winning_call_streams_as_tool_call_deltas(upstream):
    upstream.default = Reply(200, upstream_body(VOTE))
    with proxy(upstream, n=5) as url:
        stream = client(url).chat.completions.create(model="rfprm", messages=ASK, tools=[WEATHER, SEARCH], stream=True)
        calls, finish = [], None
        for chunk in stream:
            for c in chunk.choices:
                calls += c.delta.tool_calls or []
                finish = c.finish_reason or finish
    assert finish == "tool_calls" and len(calls) == 1
    assert (calls[0].index, calls[0].id, calls[0].function.name, calls[0].function.arguments) == (
        0,
        "call_0",
        "get_weather",
        PARIS,
    )


def test_text_wins_when_more_samples_answer_in_text(upstream):
    upstream.default = Reply(200, upstream_body(["Wear a coat: it is 8 C.", "A coat.", "A coat.", *VOTE[:2]]))
    with proxy(upstream, n=5) as url:
        response = client(url).chat.completions.create(model="rfprm", messages=ASK, tools=[WEATHER])
    assert response.choices[0].finish_reason == "stop" and response.choices[0].message.tool_calls is None
    assert response.choices[0].message.content in ("Wear a coat: it is 8 C.", "A coat.")


def test_the_next_turn_passes_the_call_and_its_result_on(upstream):
    """An agent loop: the assistant's tool call and the tool's result go back to the upstream
    as the client sent them; the answer of that turn is text."""
    upstream.default = Reply(200, upstream_body(VOTE))
    with proxy(upstream, n=5) as url:
        first = client(url).chat.completions.create(model="rfprm", messages=ASK, tools=[WEATHER, SEARCH])
        assistant = first.choices[0].message.model_dump(exclude_none=True)
        result = {"role": "tool", "tool_call_id": "call_0", "content": '{"temperature": 8}'}
        upstream.default = Reply(200, upstream_body(["Wear a coat: it is 8 C."] * 5))
        second = client(url).chat.completions.create(
            model="rfprm", messages=[*ASK, assistant, result], tools=[WEATHER, SEARCH]
        )
    assert second.choices[0].message.content == "Wear a coat: it is 8 C."
    history = upstream.requests[-1]["messages"]
    assert history[-2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [call("get_weather", PARIS, 0)],
    }
    assert history[-1] == result


@pytest.mark.parametrize(
    ("extra", "code", "param"),
    [
        (
            {"tool_choice": {"type": "function", "function": {"name": "book_flight"}}},
            "invalid_tool_choice",
            "tool_choice",
        ),
        ({"rfprm": {"strategy": "beam_search", "n": 4, "params": {"beam_width": 2}}}, "invalid_tools", "tools"),
        ({"rfprm": {"params": {"early_exit": "probe"}}}, "invalid_tools", "tools"),
        (  # a parameters schema the vote could not check arguments against
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "no-such-type"}}}]},
            "invalid_field",
            "tools.0.function",
        ),
    ],
)
def test_tools_that_cannot_be_honoured_are_400s(upstream, extra, code, param):
    with proxy(upstream, n=2) as url:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "rfprm", "messages": ASK, "tools": [WEATHER], **extra},  # extra may replace the tools
            timeout=30,
        )
    error = response.json()["error"]
    assert response.status_code == 400 and (error["code"], error["param"]) == (code, param), error
    assert upstream.requests == []


def test_tools_need_an_upstream_that_takes_them(tiny_prm_dir):
    """The in-process demo model cannot call tools: a 400 saying what can, not a text answer."""

    with running(Settings(n=2, serve={"api_keys": KEYS})) as url:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "rfprm", "messages": [{"role": "user", "content": QUESTION}], "tools": [WEATHER]},
            headers={"Authorization": f"Bearer {KEYS[0]}"},
            timeout=60,
        )
    assert response.status_code == 400 and "openai backend" in response.json()["error"]["message"]
    assert json.dumps(response.json()).count("Traceback") == 0


def test_a_langchain_agent_loop_through_the_proxy(upstream):
    """LangChain's ChatOpenAI with bound tools, as an agent runs it: the voted call comes back
    as its tool call, the agent runs the tool and sends the result, the proxy answers in text."""
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str, unit: str = "c") -> str:
        """The weather in a city."""
        return json.dumps({"city": city, "temperature": 8, "unit": unit})

    @tool
    def search(q: str) -> str:
        """Search the web."""
        return "nothing"

    upstream.default = Reply(200, upstream_body(VOTE))
    with proxy(upstream, n=5) as url:
        llm = ChatOpenAI(base_url=f"{url}/v1", api_key="any", model="rfprm", max_retries=0)
        agent = llm.bind_tools([get_weather, search])
        history = [HumanMessage("What should I wear in Paris today?")]
        step = agent.invoke(history)
        assert [(c["name"], c["args"], c["id"]) for c in step.tool_calls] == [
            ("get_weather", {"city": "Paris", "unit": "c"}, "call_0")
        ]
        history += [step, ToolMessage(get_weather.invoke(step.tool_calls[0]["args"]), tool_call_id="call_0")]
        upstream.default = Reply(200, upstream_body(["Wear a coat: it is 8 C."] * 5))
        final = agent.invoke(history)
    assert final.content == "Wear a coat: it is 8 C." and not final.tool_calls
    offered = [t["function"]["name"] for t in upstream.requests[0]["tools"]]
    assert offered == ["get_weather", "search"]
    assert upstream.requests[-1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_0",
        "content": '{"city": "Paris", "temperature": 8, "unit": "c"}',
    }


SCHEMA = {
    "name": "weather",
    "schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
        "required": ["city", "temp"],
    },
}


def test_json_answers_are_checked_against_the_schema_and_voted_as_canonical_json(upstream):
    # valid: Paris x2 (keys in either order, one after its thinking), London x1; a sample
    # without "temp" and one that is not JSON fail. The first Paris sample comes back verbatim.
    samples = [
        '{"city": "Paris", "temp": 8}',
        '{"city": "London", "temp": 3}',
        '<think>It is winter.</think>\n\n{"temp": 8, "city": "Paris"}',
        '{"city": "Paris"}',
        "Paris, 8 C",
    ]
    upstream.default = Reply(200, upstream_body(samples))
    response_format = {"type": "json_schema", "json_schema": SCHEMA}
    with proxy(upstream, n=5) as url:
        response = client(url).chat.completions.create(
            model="rfprm",
            messages=ASK,
            response_format=response_format,
            extra_body={"rfprm": {"return_candidates": True}},
            n=3,
        )
    # n=3 asks for three distinct JSON answers: there are two (Paris, then London)
    assert [c.message.content for c in response.choices] == samples[:2]
    rfprm = response.model_extra["rfprm"]
    assert rfprm["answer"] == '{"city":"Paris","temp":8}'
    errors = [c["error"] for c in rfprm["candidates"] if c["error"]]
    assert len(errors) == 2 and any("schema" in e for e in errors) and any("not JSON" in e for e in errors)
    assert upstream.requests[0]["response_format"] == response_format


def test_json_object_answers_must_be_objects(upstream):
    upstream.default = Reply(200, upstream_body(["[1, 2]", '{"a": 1}', "[1, 2]"]))
    with proxy(upstream, n=3) as url:
        response = client(url).chat.completions.create(
            model="rfprm", messages=ASK, response_format={"type": "json_object"}
        )
    assert response.choices[0].message.content == '{"a": 1}'  # the lists, though more, are not objects


@pytest.mark.parametrize("schema", [5, {"type": 5}, {"type": "object", "properties": {"a": {"type": "no-such-type"}}}])
def test_a_schema_that_is_not_one_is_a_400(upstream, schema):
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    with proxy(upstream, n=2) as url:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "rfprm", "messages": ASK, "response_format": response_format},
            timeout=30,
        )
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"].startswith("response_format"), error
    assert upstream.requests == []


def token(text: str, logprob: float, top: list[tuple[str, float]]) -> dict:
    entry = lambda t, v: {"token": t, "logprob": v, "bytes": list(t.encode())}  # noqa: E731
    return {**entry(text, logprob), "top_logprobs": [entry(t, v) for t, v in top]}


def test_logprobs_pass_through_from_the_upstream_plain_and_streamed(upstream):
    """The chosen sample's tokens come back as the upstream sent them; the upstream was asked
    for them (and for the top 2); a stream carries them with the answer's first chunk."""
    tokens = [token("Wear", -0.1, [("Wear", -0.1), ("Take", -2.5)]), token(" a coat", -0.4, [(" a coat", -0.4)])]
    body = upstream_body(["Wear a coat", "Wear a coat"])
    body["choices"][0]["logprobs"] = {"content": tokens}
    body["choices"][1]["logprobs"] = {"content": tokens}
    upstream.default = Reply(200, body)
    with proxy(upstream, n=2) as url:
        response = client(url).chat.completions.create(model="rfprm", messages=ASK, logprobs=True, top_logprobs=2)
        stream = client(url).chat.completions.create(
            model="rfprm", messages=ASK, logprobs=True, top_logprobs=2, stream=True
        )
        streamed = [t for chunk in stream for c in chunk.choices if c.logprobs for t in c.logprobs.content]
    assert [t.model_dump() for t in response.choices[0].logprobs.content] == tokens
    assert [t.model_dump() for t in streamed] == tokens
    assert upstream.requests[0]["logprobs"] is True and upstream.requests[0]["top_logprobs"] == 2


def test_structured_output_as_the_sdk_and_langchain_ask_for_it(upstream):
    """The openai SDK's parse() with a pydantic model (a strict json_schema), and LangChain's
    with_structured_output both ways (json_schema, and function calling with a named
    tool_choice): the voted answer parses into the client's model."""
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Weather(BaseModel):
        city: str
        temp: float

    # Paris twice (keys in either order), London once, one answer without temp
    samples = [
        '{"city": "Paris", "temp": 8}',
        '{"temp": 8, "city": "Paris"}',
        '{"city": "London", "temp": 3}',
        '{"city": "Rome"}',
    ]
    upstream.default = Reply(200, upstream_body(samples))
    with proxy(upstream, n=4) as url:
        parsed = client(url).chat.completions.parse(model="rfprm", messages=ASK, response_format=Weather)
        llm = ChatOpenAI(base_url=f"{url}/v1", api_key="any", model="rfprm", max_retries=0)
        by_schema = llm.with_structured_output(Weather, method="json_schema").invoke("Weather in Paris?")
        sent_schema = upstream.requests[-1]["response_format"]
        calls = [
            ("Weather", '{"city": "Paris", "temp": 8}'),
            ("Weather", '{"city":"Paris","temp":8}'),
            ("Weather", '{"city": "Oslo", "temp": -2}'),
        ]
        upstream.default = Reply(200, upstream_body(calls))
        by_call = llm.with_structured_output(Weather, method="function_calling").invoke("Weather in Paris?")
        sent_choice = upstream.requests[-1]["tool_choice"]
    assert parsed.choices[0].message.parsed == Weather(city="Paris", temp=8)
    assert by_schema == Weather(city="Paris", temp=8) and sent_schema["type"] == "json_schema"
    assert by_call == Weather(city="Paris", temp=8) and sent_choice["function"]["name"] == "Weather"


LITELLM_AGENT = """
import json, os, sys
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of the price list: tests run offline
import litellm

url = sys.argv[1]
tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}]
ask = [{"role": "user", "content": "What should I wear in Paris today?"}]
first = litellm.completion(model="openai/rfprm", api_base=url + "/v1", api_key="any", messages=ask, tools=tools)
call = first.choices[0].message.tool_calls[0]
ask += [first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 8}'}]
final = litellm.completion(model="openai/rfprm", api_base=url + "/v1", api_key="any", messages=ask, tools=tools)
print(json.dumps({"call": [call.function.name, json.loads(call.function.arguments)],
                  "finish": first.choices[0].finish_reason, "final": final.choices[0].message.content}))
"""


def test_a_litellm_agent_loop_through_the_proxy(upstream, tmp_path):
    """LiteLLM's completion() with tools, as a plain script (LiteLLM's import changes logging):
    the voted call, then the answer after the tool's result."""
    import subprocess
    import sys

    script = tmp_path / "agent.py"
    script.write_text(LITELLM_AGENT)
    upstream.script = [Reply(200, upstream_body(VOTE)), Reply(200, upstream_body(["Wear a coat."] * 5))]
    with proxy(upstream, n=5) as url:
        done = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {
        "call": ["get_weather", {"city": "Paris", "unit": "c"}],
        "finish": "tool_calls",
        "final": "Wear a coat.",
    }
    assert upstream.requests[-1]["messages"][-1]["role"] == "tool"


def test_no_valid_json_answer_is_a_502_that_says_why(upstream):
    """A 200 with empty content would break the client's parse(): the upstream gave nothing
    usable, and the error says what was wrong with the samples."""
    upstream.default = Reply(200, upstream_body(["Paris, 8 C", "[1, 2]"]))
    with proxy(upstream, n=2) as url:
        with pytest.raises(openai.InternalServerError) as failed:
            client(url).chat.completions.create(model="rfprm", messages=ASK, response_format={"type": "json_object"})
    assert failed.value.status_code == 502 and failed.value.body["code"] == "no_valid_answer"
    assert "not JSON" in failed.value.body["message"] or "not an object" in failed.value.body["message"]


CITY = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "London"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_the_real_vllm_server_made_to_call_a_tool_and_answer_json(tool_vllm_server, tiny_prm_dir):
    """A tiny random model emits no tool call of its own; a named tool_choice and a json_schema
    make vLLM's structured output write them. Its calls and JSON answers go through the vote."""
    settings = Settings(
        n=3,
        strategy="majority_vote",
        generator={"backend": "openai", "base_url": tool_vllm_server.base_url, "model": "tiny", "max_tokens": 60},
        prm={"model": str(tiny_prm_dir)},
    )
    named = {"type": "function", "function": {"name": "get_weather"}}
    city = {"name": "city", "schema": CITY["function"]["parameters"]}
    with running(settings) as url:
        called = client(url).chat.completions.create(model="rfprm", messages=ASK, tools=[CITY], tool_choice=named)
        answered = client(url).chat.completions.create(
            model="rfprm", messages=ASK, response_format={"type": "json_schema", "json_schema": city}
        )
    [call] = called.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"] in ("Paris", "London")
    assert called.choices[0].finish_reason == "tool_calls"
    assert json.loads(answered.choices[0].message.content)["city"] in ("Paris", "London")
