"""Route settings (rfprm_tts.serve.routes): what a route changes, the budget a request gets on
it, and one line naming the route for each mistake, before any model loads."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from rfprm_tts import Settings
from rfprm_tts.cli.serve import route_option
from rfprm_tts.errors import ConfigError, RfprmError
from rfprm_tts.serve.errors import APIError
from rfprm_tts.serve.protocol import parse_chat
from rfprm_tts.serve.routes import RouteTable


def table(**serve) -> RouteTable:
    return RouteTable(Settings(n=4, strategy="best_of_n", serve=serve))


def call(routes: RouteTable, header: str | None = None, **body):
    request = {"messages": [{"role": "user", "content": "Compute 2 + 1."}], **body}
    return parse_chat(json.dumps(request).encode(), routes, header)


def test_a_route_changes_only_what_it_names():
    routes = table(routes={"deep": {"strategy": "beam_search", "strategy_params": {"beam_width": 2}, "n": 8}})
    deep = call(routes, model="deep")
    assert (deep.model, deep.strategy.name, deep.strategy.params.n, deep.strategy.params.beam_width) == (
        "deep",
        "beam_search",
        8,
        2,
    )
    assert deep.settings.generator == routes.routes["rfprm"].generator
    plain = call(routes)
    assert (plain.model, plain.strategy.name, plain.strategy.params.n) == ("rfprm", "best_of_n", 4)


def test_a_routes_budget_holds_for_requests_that_ask_for_none():
    routes = table(max_token_budget=5000, routes={"cheap": {"token_budget": 800}})
    assert call(routes, model="cheap").strategy.params.token_budget == 800
    assert call(routes, model="cheap", rfprm={"token_budget": 300}).strategy.params.token_budget == 300
    assert call(routes, "2000", model="cheap").strategy.params.token_budget == 2000  # within the server's limit
    assert call(routes).strategy.params.token_budget == 5000  # the default route: the server's limit
    with pytest.raises(APIError) as over:
        call(routes, model="cheap", rfprm={"token_budget": 9000})
    assert over.value.code == "token_budget_too_large"


@pytest.mark.parametrize(
    ("serve", "named"),
    [
        ({"routes": {"deep": {"strategy": "beam_serch"}}}, "serve.routes.deep"),
        ({"routes": {"deep": {"generator": {"modle": "x"}}}}, "serve.routes.deep"),
        (
            {"routes": {"deep": {"strategy": "beam_search", "strategy_params": {"beam_width": 0}}, "x": {}}},
            "serve.routes.deep",
        ),
        ({"routes": {"spec": {"strategy": "specreason"}}}, "serve.routes.spec: its strategy 'specreason' asks a draft"),
        (
            {"max_token_budget": 100, "server_params": {"token_budget": 200}},
            "the default route (rfprm): its token budget 200",
        ),
        ({"max_token_budget": 100, "routes": {"big": {"token_budget": 200}}}, "serve.max_token_budget"),
        ({"max_n": 8, "routes": {"big": {"n": 16}}}, "serve.max_n"),
        ({"routes": {"rfprm": {"n": 2}}}, "serve.model_name"),
        ({"passthrough_models": True}, "generator.backend = 'openai'"),
    ],
)
def test_a_mistake_in_a_route_is_one_line_naming_it(serve, named):
    params = serve.pop("server_params", {})
    with pytest.raises(ConfigError) as mistake:
        RouteTable(Settings(n=4, strategy="best_of_n", strategy_params=params, serve=serve))
    message = str(mistake.value)
    assert named in message and "\n" not in message


def test_route_options_from_the_command_line():
    assert route_option(["deep", "strategy=beam_search", "n=16", "strategy_params.beam_width=4"]) == (
        "deep",
        {"strategy": "beam_search", "n": 16, "strategy_params": {"beam_width": 4}},
    )
    assert route_option(["big", "generator.model=Qwen/Qwen2.5-7B", "generator.base_url=http://gpu:8000/v1"]) == (
        "big",
        {"generator": {"model": "Qwen/Qwen2.5-7B", "base_url": "http://gpu:8000/v1"}},
    )
    for words in (["n=3"], ["deep", "strategy"], ["deep", "n=3", "n.x=1"]):
        with pytest.raises(RfprmError):
            route_option(words)


def test_the_proxy_guides_routes_example_is_valid(tmp_path, monkeypatch):
    guide = (Path(__file__).parents[2] / "docs" / "guides" / "proxy.md").read_text()
    [example] = re.findall(r"```toml\n(.*?)```", guide, re.S)
    (tmp_path / "rfprm.toml").write_text(textwrap.dedent(example))
    monkeypatch.chdir(tmp_path)
    routes = RouteTable(Settings.load())
    assert routes.names == ["rfprm", "deep", "big"]
    assert call(routes, model="deep").strategy.params.token_budget == 20000
    assert routes.settings("big").generator.base_url == "http://gpu-box:8000/v1"


def test_an_unknown_strategy_is_a_400_where_the_servers_n_is_left_to_the_strategy():
    """With n unset, the request's N is its strategy's own default, so its strategy is looked
    up first: a misspelt name is the client's mistake (it escaped as a server error)."""
    with pytest.raises(APIError) as refused:
        call(RouteTable(Settings(strategy="best_of_n")), rfprm={"strategy": "bestof_n"})
    assert refused.value.status == 400 and refused.value.param == "rfprm.strategy"
    assert "did you mean 'best_of_n'?" in str(refused.value)
    assert (
        call(RouteTable(Settings(strategy="best_of_n")), rfprm={"strategy": "speculative_steps"}).strategy.params.n == 1
    )
