import asyncio

import pytest

import rfprm_tts
from helpers.fakes import DigitScorer, ListGenerator
from rfprm_tts import ConfigError, ReasoningSolver, Settings
from rfprm_tts.strategies import StrategyParams, available_strategies
from rfprm_tts.strategies.best_of_n import BestOfN

# DigitScorer step scores and aggregates, worked out by hand:
TEXTS = [
    "a 5\n\nb 5\n\n\\boxed{6}",  # .5 .5 .6: min .5  last .6  prod .15   mean .533
    "a 9\n\nb 1\n\nso \\boxed{8}",  # .9 .1 .8: min .1  last .8  prod .072  mean .6
    "a 4\n\nb 9\n\n\\boxed{7}",  # .4 .9 .7: min .4  last .7  prod .252  mean .667
]


def solver(aggregation: str, fail=frozenset(), n=3) -> ReasoningSolver:
    settings = Settings.load(n=n, prm=dict(aggregation=aggregation))
    return ReasoningSolver(settings, generator=ListGenerator(TEXTS, fail=fail), scorer=DigitScorer())


@pytest.mark.parametrize(
    "aggregation, answer", [("min", "6"), ("last", "8"), ("prod", "7"), ("mean", "7"), ("reasonflux", "8")]
)
def test_best_of_n_picks_the_highest_aggregate(aggregation, answer):
    result = solver(aggregation).solve("q")
    assert result.answer == answer
    scores = [c.score for c in result.candidates]
    assert scores == sorted(scores, reverse=True)
    assert result.best is result.candidates[0]
    assert result.strategy_params["aggregation"] == aggregation


def test_auto_aggregation_is_the_checkpoints_choice_else_reasonflux():
    def solve(scorer, **prm):
        return ReasoningSolver(Settings.load(n=3, prm=prm), generator=ListGenerator(TEXTS), scorer=scorer).solve("q")

    prod_checkpoint = DigitScorer()
    prod_checkpoint.aggregation = "prod"
    result = solve(prod_checkpoint)
    assert (result.answer, result.strategy_params["aggregation"]) == ("7", "prod")
    assert solve(DigitScorer()).strategy_params["aggregation"] == "reasonflux"
    assert solve(prod_checkpoint, aggregation="min").answer == "6"  # an explicit setting wins
    odd_checkpoint = DigitScorer()
    odd_checkpoint.aggregation = "median"
    with pytest.raises(ConfigError, match="rfprm_aggregation 'median', not one of last, min.*set prm.aggregation"):
        solve(odd_checkpoint)
    assert solve(odd_checkpoint, aggregation="min").answer == "6"


def test_usage_is_the_sum_of_what_the_backends_reported():
    result = solver("min").solve("q")
    u = result.usage
    assert u.generated_tokens == sum(len(t) for t in TEXTS)
    assert u.prompt_tokens == 1 and u.generator_calls == 1 and u.prm_calls == 1
    steps = [s for t in TEXTS for s in t.split("\n\n")]
    assert u.prm_tokens == sum(len(s) for s in steps)
    assert u.wall_time_s > 0


def test_failed_candidates_are_kept_and_ranked_last():
    result = solver("min", fail={0}).solve("q")
    assert result.answer == "7"  # candidate 0 (min .5) failed; 2 (min .4) beats 1 (.1)
    assert result.candidates[-1].error == "injected failure" and result.candidates[-1].score is None


def test_per_solve_overrides_and_their_limits():
    s = solver("min", n=3)
    assert s.solve("q", prm__aggregation="last").answer == "8"
    assert len(s.solve("q", n=2).candidates) == 2
    assert s.solve("q", generator__temperature=0.1, generator__system_prompt="Be brief.").answer == "6"
    with pytest.raises(ConfigError, match="models are loaded: a solve may change only search settings"):
        s.solve("q", generator__model="another-model")
    with pytest.raises(ConfigError, match="models are loaded"):
        s.solve("q", prm__batch_size=2)
    with pytest.raises(ConfigError, match="unknown strategy 'nope'; available: .*best_of_n"):
        s.solve("q", strategy="nope")
    with pytest.raises(ConfigError, match="it takes: n"):
        s.solve("q", beam_widht=4)
    for bad in ("", "   ", None):
        with pytest.raises(ConfigError, match="prompt is empty"):
            s.solve(bad)


def test_n_in_strategy_params_is_the_solves_n_and_a_second_n_is_refused():
    # strategy_params={"n": ...} was a TypeError ("multiple values for keyword argument 'n'")
    settings = Settings.load(strategy="majority_vote", strategy_params={"n": 3})
    solver = ReasoningSolver(settings, generator=ListGenerator(TEXTS), scorer=DigitScorer())
    assert settings.n == 3 and len(solver.solve("q").candidates) == 3
    assert len(solver.solve("q", n=2).candidates) == 2  # a solve's own n still wins
    with pytest.raises(ConfigError, match=r"n is given twice, 5 and 3 in strategy_params: keep one"):
        Settings.load(strategy_params={"n": 3}, n=5)
    with pytest.raises(ConfigError, match="strategy_params .*whole number >= 1"):
        Settings.load(strategy_params={"n": "4"})


def test_explicit_strategy_object():
    s = ReasoningSolver(
        Settings.load(prm=dict(aggregation="last")),
        generator=ListGenerator(TEXTS),
        scorer=DigitScorer(),
        strategy=BestOfN(StrategyParams(n=2)),
    )
    result = s.solve("q")
    assert len(result.candidates) == 2 and result.answer == "8"


def test_sync_facade_works_inside_a_running_event_loop():
    async def notebook_cell():
        # What Jupyter does: call the sync API while a loop is running in this thread.
        return solver("min").solve("q")

    result = asyncio.run(notebook_cell())
    assert result.answer == "6"


def test_async_core():
    async def main():
        async with solver("min") as s:
            return await asyncio.gather(s.asolve("q1"), s.asolve("q2"))

    results = asyncio.run(main())
    assert [r.question for r in results] == ["q1", "q2"]


def test_registry_lists_builtins():
    assert "best_of_n" in available_strategies()


def test_flop_estimates_use_known_parameter_counts():
    gen, scorer = ListGenerator(TEXTS), DigitScorer()
    gen.num_parameters, scorer.num_parameters = 1000, 10
    result = ReasoningSolver(Settings.load(n=3), generator=gen, scorer=scorer).solve("q")
    u = result.usage
    assert u.generator_flops == 2 * 1000 * (u.prompt_tokens + u.generated_tokens)
    assert u.prm_flops == 2 * 10 * u.prm_tokens
    assert solver("min").solve("q").usage.generator_flops is None  # unknown size: no guess


class QuestionRecorder(DigitScorer):
    """DigitScorer that remembers the questions it was asked to score."""

    def __init__(self):
        super().__init__()
        self.questions = []

    def score_batch(self, question, trajectories):
        self.questions.append(question)
        return super().score_batch(question, trajectories)


HISTORY = [
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "q"},
]


def test_chat_messages_reach_the_generator_and_the_last_user_message_is_the_question():
    gen, scorer = ListGenerator(TEXTS), QuestionRecorder()
    settings = Settings.load(n=3, generator={"system_prompt": "Solve step by step."})
    result = ReasoningSolver(settings, generator=gen, scorer=scorer).solve(HISTORY)
    assert gen.requests[0].messages == [{"role": "system", "content": "Solve step by step."}, *HISTORY]
    assert scorer.questions == ["q"] and result.question == "q" and result.messages == gen.requests[0].messages
    # the conversation's own system message wins over generator.system_prompt
    own = [{"role": "system", "content": "Mine."}, *HISTORY]
    ReasoningSolver(settings, generator=gen, scorer=scorer).solve(own)
    assert gen.requests[-1].messages == own
    # a per-solve system prompt, and OpenAI's "developer" role read as the system message
    ReasoningSolver(Settings.load(n=3), generator=gen, scorer=scorer).solve("q", generator__system_prompt="Brief.")
    assert gen.requests[-1].messages[0] == {"role": "system", "content": "Brief."}
    ReasoningSolver(Settings.load(n=3), generator=gen, scorer=scorer).solve(
        [{"role": "developer", "content": "D"}, HISTORY[-1]]
    )
    assert gen.requests[-1].messages[0] == {"role": "system", "content": "D"}


@pytest.mark.parametrize(
    "prompt, message",
    [
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "last message must be the user's question",
        ),
        ([{"role": "tool", "content": "x"}, {"role": "user", "content": "q"}], "role 'tool'"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "non-text content part"),
        ([{"role": "user"}], "no text content"),
        ([], "prompt is empty"),
        (42, "question string or a list of chat messages"),
    ],
)
def test_bad_prompts_are_clear_errors(prompt, message):
    with pytest.raises(ConfigError, match=message):
        solver("min").solve(prompt)


def test_module_level_solve_and_asolve_load_models_once_while_only_search_settings_change(monkeypatch):
    """Changing n, the strategy, its parameters, sampling or the aggregation reuses the loaded
    models (for asolve too); another PRM setting loads new ones."""
    import rfprm_tts.solver as solver_module

    loads = []
    build_generator, build_scorer = solver_module.build_generator, solver_module.build_scorer
    monkeypatch.setattr(solver_module, "build_generator", lambda s: loads.append("generator") or build_generator(s))
    monkeypatch.setattr(solver_module, "build_scorer", lambda s: loads.append("prm") or build_scorer(s))
    monkeypatch.setattr(solver_module, "_shared", None)
    q = "Compute 2 + 3."
    rfprm_tts.solve(q, n=2, generator__max_tokens=24)
    rfprm_tts.solve(q, n=3, strategy="weighted_best_of_n", generator__max_tokens=24, generator__temperature=0.5)
    rfprm_tts.solve(q, n=4, strategy="beam_search", beam_width=2, max_steps=3, prm__aggregation="min")
    asyncio.run(rfprm_tts.asolve(q, n=2, generator__max_tokens=24))
    asyncio.run(rfprm_tts.asolve(q, n=2, generator__system_prompt="Solve step by step."))
    assert loads == ["generator", "prm"]
    rfprm_tts.solve(q, n=2, prm__batch_size=8)  # a PRM setting: new models
    assert loads == ["generator", "prm"] * 2
    solver_module._shared.close()


def test_the_solver_closes_what_it_built_and_only_that(monkeypatch):
    import rfprm_tts.solver as solver_module

    closed = []

    class Closing(DigitScorer):
        def close(self):
            closed.append(self)

    monkeypatch.setattr(solver_module, "build_scorer", lambda settings: Closing())
    with ReasoningSolver(Settings.load(n=2), generator=ListGenerator(TEXTS)) as s:
        s.solve("q")
    assert len(closed) == 1  # built here: closed here
    given = Closing()
    with ReasoningSolver(Settings.load(n=2), generator=ListGenerator(TEXTS), scorer=given) as s:
        s.solve("q")
    assert given not in closed  # handed in: the caller's to close


def test_candidates_keep_the_generators_logprobs():
    """Every sampled token's log-probability, on complete samples and, joined step by step,
    on the answers a step-level search builds."""
    for strategy, params in (("best_of_n", {}), ("beam_search", {"beam_width": 2, "max_steps": 3})):
        result = rfprm_tts.solve("Compute 2 + 3 * 4.", n=4, strategy=strategy, generator__logprobs=True, **params)
        for c in result.candidates:
            assert c.logprobs is not None and len(c.logprobs) == c.generated_tokens > 0
            assert all(lp <= 0 for lp in c.logprobs)


def test_module_level_solve_keys_its_models_on_secret_values(monkeypatch):
    """Changing only a key means a new client: the shared solver is rebuilt, never reused
    with the old key (the keys' JSON dump is masked, so it cannot be the cache key)."""
    import rfprm_tts.solver as solver_module

    monkeypatch.setattr(solver_module, "_shared", None)
    monkeypatch.setattr(solver_module, "build_scorer", lambda settings: DigitScorer())
    monkeypatch.setattr(solver_module, "build_generator", lambda settings: ListGenerator(TEXTS))
    rfprm_tts.solve("q", n=2, prm__api_key="first-key")
    first = solver_module._shared
    rfprm_tts.solve("q", n=3, prm__api_key="first-key")
    assert solver_module._shared is first
    rfprm_tts.solve("q", n=2, prm__api_key="second-key")
    assert (
        solver_module._shared is not first
        and solver_module._shared.settings.prm.api_key.get_secret_value() == "second-key"
    )
    solver_module._shared.close()


def test_a_strategy_that_never_scores_does_not_load_the_prm(tmp_path):
    """majority_vote in front of a hosted API must not load a PRM (a 7B one takes a GPU and
    a minute): here the PRM path does not exist, so loading it would fail."""
    settings = Settings.load(prm={"model": str(tmp_path / "no-such-prm")})
    with ReasoningSolver(
        settings, generator=ListGenerator(["x = 7\n\nSo the answer is \\boxed{7}.", "\\boxed{8}"])
    ) as solver:
        result = solver.solve("q", strategy="majority_vote", n=3)
        assert result.answer == "7" and result.usage.prm_tokens == 0 and "aggregation" not in result.strategy_params
        with pytest.raises(ConfigError, match="prm model .*no-such-prm.* is a local path that does not exist"):
            solver.solve("q", strategy="best_of_n", n=3)  # a strategy that scores loads it, and says why it cannot
